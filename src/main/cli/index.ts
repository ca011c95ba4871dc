/**
 * The `moe-workbench` command line: the headless host of the engine.
 *
 *   moe-workbench info --model DIR [--json]
 *   moe-workbench forward --model DIR --input FILE.json --out FILE.safetensors [--grads]
 *   moe-workbench generate --model DIR --prompt-ids 1,2,3 --max-new-tokens N --greedy [--json]
 *   moe-workbench serve [--host H] [--port P]
 *
 * Every command takes --backend NAME (tfjs-node-gpu, tfjs-node, wasm, cpu) or reads
 * MOE_WORKBENCH_BACKEND. Bad arguments and bad files give a one-line error and a non-zero exit.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { resolve } from 'node:path'
import { BACKEND_NAMES } from '../engine/backend'
import { APP_IDENTITY } from '../appInfo'
import { forwardCommand, generateCommand, infoCommand } from './commands'
import { chatCommand } from './chatCommand'
import { datasetCommand } from './datasetCommands'
import { evalCommand, exportCommand, trainCommand } from './trainCommands'
import { adapterCommand, handoffCommand } from './handoffCommands'
import { modelCommand, runCommand } from './workspaceCommands'
import { settingKeys } from '../../shared/runConfig'
import { closestKey } from '../../shared/keys'
import { UsageError, type CliIo, type ParsedValues } from './util'

export const USAGE = `usage: moe-workbench <command> [options]

commands:
  info      --model DIR [--json] [--check-weights]        what a model folder holds (weights checked for
            [--budget 8GB] [--context N]                  NaN/Inf up to 4 GiB, or always with the flag)
            [--expert-dtype lazy|...]                     and how it fits the device budget (a folder
                                                          with config.json alone: before a download)
  forward   --model DIR --input FILE.json --out FILE.safetensors [--grads]
                                                          logits, routing, losses (and gradients)
  generate  --model DIR (--prompt TEXT | --prompt-ids 1,2,3) --max-new-tokens N [--greedy | --temperature T
            --top-k K --top-p P --min-p P --repetition-penalty R --seed S] [--no-cache] [--json]
            [--offload-budget 2GB [--expert-dtype lazy|f32|f16|bf16|int8] [--prefetch]]
                                                          (the budget: device memory for everything; what
                                                          does not fit pages from the host); --prompt is
                                                          read as it is: no chat template (chat adds it)
  chat      --model DIR [--system TEXT] [--format chat|plain] [sampling flags as generate] [--offload-budget 2GB
            [--expert-dtype lazy|f16|int8|...] [--context 2048]]
                                                          interactive, streaming, experts per reply;
                                                          """ opens a message of several lines, """ closes it
  dataset   import FILE [--layout L] [--map field=column ...] [--model DIR] [--name N] [--accept-invalid]
            [--val-ratio 0.1] [--dedupe] [--text-unit line|paragraph] | inspect FILE | list | delete ID
                                                          validation report and statistics (a text
                                                          file: a row per line, or per paragraph);
                                                          inspect exits 1 where import would refuse
  train     --model DIR --dataset ID|FILE [--config run.json | --auto] [--set key=value ...] [--name NAME]
            [--out WORKSPACE/runs/NAME] [--val-ratio 0.1] [--offload-budget 2GB [--expert-dtype lazy|...]]
            | --from RUN [--set key=value ...]  (a new run with RUN's model, dataset and settings; the
                                                 options above change them)
            | --resume RUN                                (the budget: device memory for the run; what
                                                          does not fit pages from the host, LoRA runs)
                                                          fine-tune in the workspace, with progress, ETA
                                                          and a summary; Ctrl-C keeps a checkpoint
  eval      --model RUN|DIR [--checkpoint step-N|DIR] [--dataset ID|FILE] [--split val|train|all]
            [--limit 50] [--json]                         greedy answers scored: exact match, F1, loss
                                                          (a run: its last checkpoint unless named,
                                                          its own dataset)
  export    RUN --out DIR [--checkpoint step-N|DIR] [--dtype float32|bfloat16|float16]
                                                          a merged Hugging Face checkpoint folder
            (RUN: a run folder <workspace>/runs/ID, or a run's id or name as run list shows
            it; the checkpoint: the run's last unless named)
  handoff   RUN|CONFIG --target llamafactory|axolotl --out DIR [--model DIR (a CONFIG)] [--dataset ID|FILE
            (a CONFIG; a RUN: instead of its own)]
            [--set key=value ...] [--model-ref HUB_ID] [--copy-model] [--nodes 1]
            [--gpus-per-node 8] [--gpu-memory 80GB]       a folder that runs it on a cluster with
                                                          DeepSpeed: dataset, trainer YAML, README
  adapter   import DIR [--model BASE] [--name NAME]       a PEFT LoRA adapter (LLaMA-Factory, axolotl...)
                                                          as a run: eval and export it like one trained here
  model     list | delete ID                              the workspace's models; delete removes a made or
                                                          exported one (a linked one, or one exported
                                                          with --out: the link only)
  run       list | show ID | delete ID                    the workspace's runs; show: one as its card
                                                          shows it (status, checkpoints, what a resume
                                                          redoes, evaluation); delete removes one not
                                                          training, with its checkpoints
  serve     [--host 127.0.0.1] [--port 0] [--allow-dir DIR ...] [--allow-host NAME ...] [--token T]
                                                          the browser UI and API (server mode); requests
                                                          may name files under the workspace and home
                                                          only; --allow-dir folders replace home; a new
                                                          token each start unless --token or
                                                          MOE_WORKBENCH_TOKEN gives one (16+ characters
                                                          of A-Z a-z 0-9 . _ ~ -)

--model DIR: a model folder, or the id or name of one of the workspace's models as moe-workbench
  model list shows them (\`default\`: the bundled model)
--dataset ID|FILE: the id or name of one of the workspace's datasets as moe-workbench dataset list
  shows them, or a file (imported once: the same file again uses that dataset)

common options:
  --workspace DIR  datasets, models and runs (default $MOE_WORKBENCH_WORKSPACE, else ~/moe-workbench)
  --backend NAME   ${BACKEND_NAMES.join(' | ')} (default: the best available; env MOE_WORKBENCH_BACKEND)
  --help           this text
  --version        the app's version and build`

type Options = NonNullable<ParseArgsConfig['options']>

/**
 * `moe-workbench NAME --help`: NAME's lines of the usage, then the notes on --model and
 * --dataset and the common options (the whole usage buried the command asked about).
 */
export function commandUsage(name: string): string {
  const lines = USAGE.split('\n')
  const start = lines.findIndex((l) => l.startsWith(`  ${name} `))
  if (start < 0) return USAGE
  let end = start + 1
  // A command's own lines are indented past the command column; the next command or a blank ends them.
  while (end < lines.length && /^ {3,}\S/.test(lines[end])) end++
  const notes = lines.slice(lines.findIndex((l) => l.startsWith('--model DIR:')))
  return [
    `usage: moe-workbench ${name} [options]   (every command: moe-workbench --help)`,
    '',
    ...lines.slice(start, end),
    '',
    ...(name === 'train' || name === 'handoff' ? [...setKeysHelp(), ''] : []),
    ...notes,
  ].join('\n')
}

/** The --set keys with their defaults, wrapped (they were listed only when a wrong one was refused). */
function setKeysHelp(width = 100): string[] {
  const lines = [
    '--set KEY=VALUE, repeatable (VALUE read as JSON where it parses, else as text): every key, with its',
    '  default (null: chosen from the model or the data; with no --config or --set, train chooses them all;',
    '  --auto: train chooses them, then --set changes the ones given)',
  ]
  let line = ''
  for (const { key, value } of settingKeys()) {
    const next = line ? `${line}  ${key}=${value}` : `    ${key}=${value}`
    if (line && next.length > width) {
      lines.push(line)
      line = `    ${key}=${value}`
    } else line = next
  }
  return [...lines, line]
}

/** Taken by every command (one that works without a workspace leaves --workspace unused). */
const COMMON: Options = { backend: { type: 'string' }, help: { type: 'boolean' }, workspace: { type: 'string' } }

/** Decoding flags shared by generate and chat (see samplingFromFlags and offloadFromFlags). */
const DECODING: Options = {
  greedy: { type: 'boolean' },
  temperature: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  'min-p': { type: 'string' },
  'repetition-penalty': { type: 'string' },
  seed: { type: 'string' },
  'offload-budget': { type: 'string' },
  context: { type: 'string' },
  'expert-dtype': { type: 'string' },
  prefetch: { type: 'boolean' },
}

interface Command {
  options: Options
  /** Takes positional arguments (otherwise any is an error). */
  positionals?: boolean
  run: (values: ParsedValues, io: CliIo, positionals: string[]) => Promise<number>
}

const COMMANDS: Record<string, Command> = {
  info: {
    options: {
      model: { type: 'string' },
      json: { type: 'boolean' },
      'check-weights': { type: 'boolean' },
      budget: { type: 'string' },
      context: { type: 'string' },
      'expert-dtype': { type: 'string' },
    },
    run: infoCommand,
  },
  forward: {
    options: { model: { type: 'string' }, input: { type: 'string' }, out: { type: 'string' }, grads: { type: 'boolean' } },
    run: forwardCommand,
  },
  generate: {
    options: {
      model: { type: 'string' },
      prompt: { type: 'string' },
      'prompt-ids': { type: 'string' },
      'max-new-tokens': { type: 'string' },
      ...DECODING,
      'no-cache': { type: 'boolean' },
      json: { type: 'boolean' },
    },
    run: generateCommand,
  },
  dataset: {
    options: {
      layout: { type: 'string' },
      map: { type: 'string', multiple: true },
      model: { type: 'string' },
      name: { type: 'string' },
      'accept-invalid': { type: 'boolean' },
      'val-ratio': { type: 'string' },
      dedupe: { type: 'boolean' },
      'text-unit': { type: 'string' },
      workspace: { type: 'string' },
    },
    positionals: true,
    run: datasetCommand,
  },
  chat: {
    options: {
      model: { type: 'string' },
      workspace: { type: 'string' },
      system: { type: 'string' },
      format: { type: 'string' },
      'max-new-tokens': { type: 'string' },
      ...DECODING,
    },
    run: chatCommand,
  },
  train: {
    options: {
      model: { type: 'string' },
      dataset: { type: 'string' },
      workspace: { type: 'string' },
      config: { type: 'string' },
      auto: { type: 'boolean' },
      from: { type: 'string' },
      set: { type: 'string', multiple: true },
      out: { type: 'string' },
      'offload-budget': { type: 'string' },
      'expert-dtype': { type: 'string' },
      name: { type: 'string' },
      resume: { type: 'string' },
      'val-ratio': { type: 'string' },
    },
    run: trainCommand,
  },
  eval: {
    options: {
      model: { type: 'string' },
      dataset: { type: 'string' },
      split: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
      checkpoint: { type: 'string' },
      workspace: { type: 'string' },
    },
    run: evalCommand,
  },
  export: {
    options: { out: { type: 'string' }, checkpoint: { type: 'string' }, dtype: { type: 'string' }, workspace: { type: 'string' } },
    positionals: true,
    run: exportCommand,
  },
  handoff: {
    options: {
      target: { type: 'string' },
      out: { type: 'string' },
      model: { type: 'string' },
      dataset: { type: 'string' },
      set: { type: 'string', multiple: true },
      'model-ref': { type: 'string' },
      'copy-model': { type: 'boolean' },
      nodes: { type: 'string' },
      'gpus-per-node': { type: 'string' },
      'gpu-memory': { type: 'string' },
      workspace: { type: 'string' },
    },
    positionals: true,
    run: handoffCommand,
  },
  adapter: {
    options: { model: { type: 'string' }, name: { type: 'string' }, workspace: { type: 'string' } },
    positionals: true,
    run: adapterCommand,
  },
  model: { options: { workspace: { type: 'string' } }, positionals: true, run: modelCommand },
  run: { options: { workspace: { type: 'string' } }, positionals: true, run: runCommand },
  serve: {
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      token: { type: 'string' },
      'allow-dir': { type: 'string', multiple: true },
      'allow-host': { type: 'string', multiple: true },
      workspace: { type: 'string' },
    },
    run: async (values) => {
      // --workspace, as every command takes it (the server reads MOE_WORKBENCH_WORKSPACE).
      if (typeof values.workspace === 'string') process.env.MOE_WORKBENCH_WORKSPACE = resolve(values.workspace)
      const { serveCommand } = await import('../hosts/server/serve')
      return serveCommand(values as Record<string, string | boolean | string[] | undefined>)
    },
  },
}

/**
 * `--max-new-tokens -3` as `--max-new-tokens=-3`: parseArgs reads a value starting with "-" as an
 * option, and said only how to write it; read so, the value gets its own check and its own
 * message ("must be a number > 0").
 */
export function withNegativeValues(args: readonly string[], options: ParseArgsConfig['options']): string[] {
  const out: string[] = []
  for (let i = 0; i < args.length; i++) {
    const a = args[i]
    const name = /^--([\w-]+)$/.exec(a)?.[1]
    const next = args[i + 1]
    if (name && options?.[name]?.type === 'string' && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      out.push(`${a}=${next}`)
      i++
    } else out.push(a)
  }
  return out
}

/** Runs the CLI; returns the exit code. Never throws. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  // Common options may come first (`--workspace W dataset list`): the command is the first word
  // that names one.
  if (argv[0] === '--version' || argv[0] === '-V') {
    io.out(`${APP_IDENTITY.name} ${APP_IDENTITY.version}${APP_IDENTITY.build ? ` (build ${APP_IDENTITY.build})` : ' (run from source)'}`)
    return 0
  }
  if (argv[0]?.startsWith('-') && argv[0] !== '--help' && argv[0] !== '-h') {
    const at = argv.findIndex((a) => Object.hasOwn(COMMANDS, a))
    if (at > 0) argv = [argv[at], ...argv.slice(0, at), ...argv.slice(at + 1)]
  }
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.out(USAGE)
    return name === undefined ? 2 : 0
  }
  const cmd = COMMANDS[name]
  if (!cmd) {
    io.err(`moe-workbench: unknown command "${name}"; commands: ${Object.keys(COMMANDS).join(', ')} (see --help)`)
    return 2
  }
  try {
    let values: ParsedValues
    let positionals: string[]
    const options = { ...COMMON, ...cmd.options }
    try {
      const parsed = parseArgs({
        args: withNegativeValues(rest, options),
        options,
        strict: true,
        allowPositionals: cmd.positionals === true,
      })
      values = parsed.values as ParsedValues
      positionals = parsed.positionals
    } catch (e) {
      const message = (e as Error).message
      // `--temperature -x`: parseArgs takes -x for an option; say how to write it (a negative number is read as the value).
      const dashed = /^Option '(--[\w-]+)' argument is ambiguous/.exec(message)?.[1]
      if (dashed) {
        const value = rest[rest.indexOf(dashed) + 1] ?? '-1'
        throw new UsageError(`${dashed} ${value}: write a value that starts with "-" after "=", as ${dashed}=${value}`)
      }
      // "Unknown option '--json'. To specify a positional argument starting with a '-', place it ...":
      // the option, and where the command's options are listed.
      const unknown = /^Unknown option '(-[^']*)'/.exec(message)?.[1]
      if (unknown) {
        // A typo of one of its options is named ("--modle": --model), as --set names a key.
        const close = unknown.startsWith('--') ? closestKey(unknown.slice(2), Object.keys(options)) : undefined
        throw new UsageError(
          `${unknown} is not an option of moe-workbench ${name}${close ? `: did you mean --${close}?` : ''} (see moe-workbench ${name} --help for its options)`,
        )
      }
      throw new UsageError(message.replace(/^.*?:\s*/, '').split('\n')[0])
    }
    if (values.help) {
      io.out(commandUsage(name))
      return 0
    }
    return await cmd.run(values, io, positionals)
  } catch (e) {
    if (e instanceof UsageError) {
      // (A message that already says where to look keeps its own pointer.)
      io.err(`moe-workbench ${name}: ${e.message}${/\(see moe-workbench /.test(e.message) ? '' : ' (see moe-workbench --help)'}`)
      return 2
    }
    const msg = e instanceof Error ? e.message : String(e)
    io.err(`moe-workbench ${name}: error: ${msg.split('\n')[0]}`)
    if (process.env.MOE_WORKBENCH_DEBUG && e instanceof Error && e.stack) io.err(e.stack)
    return 1
  }
}

function isMain(): boolean {
  const entry = process.argv[1]
  if (!entry) return false
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url))
  } catch {
    return false
  }
}

/** Entry point for bin/moe-workbench.js. */
export async function main(argv = process.argv.slice(2)): Promise<void> {
  // Output piped into a command that stops reading (`run list | head -1`): leave quietly, as
  // other commands do, instead of an unhandled EPIPE with a stack trace.
  for (const stream of [process.stdout, process.stderr])
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') throw e
      process.exit(process.exitCode ?? 0)
    })
  const code = await runCli(argv, { out: (l) => process.stdout.write(l + '\n'), err: (l) => process.stderr.write(l + '\n') })
  process.exitCode = code
}

if (isMain()) void main()
