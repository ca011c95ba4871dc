/**
 * The CLI in-process (runCli), as a user runs it: info, forward (checked against the reference
 * fixtures), generate, and one-line errors with non-zero exits for bad arguments and files.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { runCli } from '../../../src/main/cli/index'
import { applyOverrides, settingKeys, validateRunConfig } from '../../../src/shared/runConfig'
import { loadSafetensors, saveSafetensors } from '../../../src/main/engine/safetensors'

const FIX = join(__dirname, '../../fixtures/moe-reference')

async function cli(...argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = []
  const err: string[] = []
  const code = await runCli(argv, { out: (l) => out.push(l), err: (l) => err.push(l) })
  return { code, out, err }
}

describe('moe-workbench CLI', () => {
  let tmp: string
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'moe-cli-'))
  })

  it("NAME --help shows that command's usage and the common options, not every command's", async () => {
    const serve = await cli('serve', '--help')
    expect(serve.code).toBe(0)
    const text = serve.out.join('\n')
    expect(text).toMatch(/^usage: moe-workbench serve \[options\]/)
    expect(text).toContain('  serve     [--host 127.0.0.1] [--port 0]')
    expect(text).toContain('--allow-dir folders replace home')
    expect(text).toContain('--workspace DIR')
    expect(text).not.toMatch(/^ {2}train /m)
    expect((await cli('--help')).out.join('\n')).toMatch(/^ {2}train /m)
    expect(text).not.toMatch(/--set KEY=VALUE/)
    // train and handoff list every --set key with its default (only a wrong key's refusal listed them).
    for (const name of ['train', 'handoff']) {
      const help = (await cli(name, '--help')).out.join('\n')
      const listed = new Set([...help.matchAll(/(?<=\s)([a-zA-Z.]+)=(\S+)/g)].map((m) => `${m[1]}=${m[2]}`))
      for (const k of settingKeys()) expect(listed, name).toContain(`${k.key}=${k.value}`)
      expect(help).toMatch(/^ {4}method=full {2}lora\.rank=8 /m)
      const block = help.split('\n').filter((l) => /^ {4}[a-zA-Z.]+=/.test(l))
      expect(block.length).toBeGreaterThan(5)
      for (const l of block) expect(l.length).toBeLessThanOrEqual(100)
    }
    expect(settingKeys()).toContainEqual({ key: 'optimizer.lr', value: '0.0003' })
    expect(settingKeys()).toContainEqual({ key: 'esft.score', value: 'gate' })
    expect(settingKeys()).toContainEqual({ key: 'freeze.experts', value: '{}' })
    expect(settingKeys().map((k) => k.key)).not.toContain('optimizer')
    // each key is one --set takes: applied alone it validates
    for (const k of settingKeys()) expect(() => validateRunConfig(applyOverrides({}, [`${k.key}=${k.value}`])), k.key).not.toThrow()
  })

  it('info reports family, layers, experts, params, bytes and backend', async () => {
    const r = await cli('info', '--model', join(FIX, 'qwen2_moe'), '--backend', 'cpu', '--json')
    expect(r.code).toBe(0)
    const info = JSON.parse(r.out[0])
    expect(info).toMatchObject({ family: 'qwen2_moe', numLayers: 2, numExperts: 6, topK: 2, backend: 'cpu', checkpointDtype: 'float32' })
    expect(info.params.total).toBe(54048)
    // active = total − 6 experts·2 layers + 2 chosen·2 layers, each expert 3·32·24 weights
    expect(info.params.active).toBe(54048 - 2 * 4 * 3 * 32 * 24)
    expect(info.bytesByDtype.bfloat16).toBe(54048 * 2)
    // --workspace, a common option, is taken by every command (info was refused it)
    const text = await cli('info', '--model', join(FIX, 'mixtral'), '--backend', 'cpu', '--workspace', tmp)
    expect(text.code).toBe(0)
    expect(text.out.join('\n')).toMatch(/family\s+mixtral/)
    expect(text.out.join('\n')).toMatch(/backend\s+cpu/)
    expect(text.out.join('\n')).toMatch(/weights\s+all finite \(checked\)/)
    // A folder without its tokenizer says what that rules out (found only when chat or eval failed)
    expect(info.hasTokenizer).toBe(false)
    expect(text.out.join('\n')).toMatch(
      /tokenizer\s+no tokenizer\.json: chat, evaluation and text datasets need one \(copy the base model's/,
    )
    const bundled = await cli('info', '--model', join(__dirname, '../../../resources/default-model'), '--backend', 'cpu')
    expect(bundled.out.join('\n')).toMatch(/tokenizer\s+tokenizer\.json$/m)
    expect(text.out.join('\n')).toMatch(/plan\s+[\d.]+ GiB \(the cpu default; --budget to change\): fits resident/)
    // on wasm: the threads, and what multiplies (the native matmul in CI)
    const wasm = (await cli('info', '--model', join(FIX, 'mixtral'), '--backend', 'wasm')).out.join('\n')
    const multiplier =
      process.env.MOE_WORKBENCH_REQUIRE_NATIVE_MATMUL === '1' ? 'onnxruntime-node [\\d.]+ \\(MLAS\\)' : '(onnxruntime-node|XNNPACK)'
    expect(wasm).toMatch(
      new RegExp(
        `backend\\s+wasm \\(\\d+ threads?; MOE_WORKBENCH_THREADS to change\\); matmul by ${multiplier}.* \\(MOE_WORKBENCH_MATMUL=native\\|wasm to choose\\)`,
      ),
    )
    // --budget: the planner's placement, in text and JSON.
    const small = await cli('info', '--model', join(FIX, 'mixtral'), '--backend', 'cpu', '--budget', '128KiB', '--context', '16', '--json')
    expect(JSON.parse(small.out[0]).plan).toMatchObject({ budgetBytes: 128 * 1024, fits: true, fitsResident: false, storage: 'lazy' })
    const tiny = await cli('info', '--model', join(FIX, 'mixtral'), '--backend', 'cpu', '--budget', '1KB')
    expect(tiny.out.join('\n')).toMatch(/plan\s+1000 B: does not fit: .* more than the budget of 1000 B; raise the budget to at least/)
    // The budget written once, one way: "plan 976.6 KiB: ... more than the budget of 976.5 KiB" for 1MB.
    for (const budget of ['1MB', '8GB', '300KB']) {
      const line = (await cli('info', '--model', join(FIX, 'mixtral'), '--backend', 'cpu', '--budget', budget, '--context', '100000')).out
      expect(line.join('\n')).not.toMatch(/plan/) // the context is refused first (below)
      const plan = (await cli('info', '--model', join(FIX, 'mixtral'), '--backend', 'cpu', '--budget', budget)).out.find((l) =>
        l.startsWith('plan'),
      )!
      const stated = /^plan\s+([\d.]+ [KMG]?i?B): /.exec(plan)?.[1]
      expect(stated, plan).toBeDefined()
      if (/budget of/.test(plan)) expect(plan).toContain(`budget of ${stated}`)
    }
    expect((await cli('info', '--model', join(FIX, 'mixtral'), '--backend', 'cpu', '--budget', '1MB')).out.join('\n')).toMatch(
      /plan\s+976\.5 KiB: does not fit: .* more than the budget of 976\.5 KiB/,
    )
    // --context past the model's positions: refused, naming them (a cache it can never fill was planned).
    const positions = JSON.parse(readFileSync(join(FIX, 'mixtral', 'config.json'), 'utf8')).max_position_embeddings
    const far = await cli('info', '--model', join(FIX, 'mixtral'), '--backend', 'cpu', '--context', String(positions + 1))
    expect(far.code).toBe(2)
    expect(far.err[0]).toBe(
      `moe-workbench info: --context: ${positions + 1} is more than the model's ${positions} positions (max_position_embeddings); give at most ${positions} (see moe-workbench --help)`,
    )
    expect((await cli('info', '--model', join(FIX, 'mixtral'), '--backend', 'cpu', '--context', String(positions))).code).toBe(0)
    expect((await cli('info', '--model', join(FIX, 'mixtral'), '--budget', 'lots')).err[0]).toMatch(/--budget: "lots" is not a size/)
    // The app's reading of a size: terabytes taken, zero refused (the two once disagreed).
    const tera = await cli('info', '--model', join(FIX, 'mixtral'), '--backend', 'cpu', '--budget', '0.001TB', '--json')
    expect(JSON.parse(tera.out[0]).plan.budgetBytes).toBe(1e9)
    // More than this machine has, on a backend whose device memory is this machine's: planned
    // within 80% of it, and the plan says so (it planned 1 TB on a 24 GB machine as "fits").
    const big = JSON.parse((await cli('info', '--model', join(FIX, 'mixtral'), '--backend', 'cpu', '--budget', '1TB', '--json')).out[0])
    expect(big.plan.budgetBytes).toBe(Math.floor(totalmem() * 0.8))
    expect(big.plan.message).toMatch(
      / \(planned for [\d.]+ GiB of the 931.32 GiB asked, 80% of this machine's [\d.]+ GiB of memory, where the cpu backend keeps its weights\)$/,
    )
    expect((await cli('info', '--model', join(FIX, 'mixtral'), '--budget', '0')).err[0]).toMatch(/--budget: "0" is not a size above 0/)
    expect((await cli('info', '--model', join(FIX, 'mixtral'), '--budget', '99999999TiB')).err[0]).toMatch(
      /--budget: "99999999TiB" is more than any machine holds/,
    )
    // A plain number under 1 MiB is a slip for GB: asked for its unit, not planned as 80 bytes.
    expect((await cli('info', '--model', join(FIX, 'mixtral'), '--budget', '80')).err[0]).toBe(
      'moe-workbench info: --budget: "80" has no unit (as bytes it is 80 B): write e.g. 80GB or 80GiB (see moe-workbench --help)',
    )
  })

  it('info on a folder with a config.json and no weights plans the model from its config (will Mixtral-8x7B fit?)', async () => {
    // Mixtral-8x7B-v0.1's config.json as published, alone in a folder: a user checking the fit before a 87 GiB download.
    const dir = join(tmp, 'mixtral-8x7b-config')
    mkdirSync(dir)
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({
        architectures: ['MixtralForCausalLM'],
        hidden_act: 'silu',
        hidden_size: 4096,
        intermediate_size: 14336,
        max_position_embeddings: 32768,
        model_type: 'mixtral',
        num_attention_heads: 32,
        num_experts_per_tok: 2,
        num_hidden_layers: 32,
        num_key_value_heads: 8,
        num_local_experts: 8,
        rms_norm_eps: 1e-5,
        rope_theta: 1e6,
        tie_word_embeddings: false,
        torch_dtype: 'bfloat16',
        vocab_size: 32000,
      }),
    )
    const json = await cli('info', '--model', dir, '--backend', 'wasm', '--budget', '8GB', '--json')
    expect(json.code).toBe(0)
    const info = JSON.parse(json.out[0])
    expect(info).toMatchObject({ configOnly: true, family: 'mixtral', numLayers: 32, numExperts: 8, topK: 2, checkpointDtype: 'bfloat16' })
    expect(info.params.total).toBe(46_702_792_704) // 46.7B, as published
    expect(info.params.active).toBe(12_879_925_248)
    expect(info.weightProblems).toEqual([])
    // The plan pages it into what wasm can address, and says that 8 GB was more than that.
    expect(info.plan.fits).toBe(true)
    expect(info.plan.message).toMatch(/^fits with paging: .*\(planned for 3\.6\d GiB of the [\d.]+ GiB asked, all the wasm backend can use/)
    const text = (await cli('info', '--model', dir, '--backend', 'cpu', '--budget', '200GB')).out.join('\n')
    expect(text).toMatch(/^stored as {2}bfloat16 \(config.json's torch_dtype\)$/m)
    expect(text).toMatch(/^weights {4}none in this folder \(config.json alone: .* model\.safetensors, .*: 87\.0 GiB in bfloat16\)$/m)
    expect(text).toMatch(/^plan {7}[\d.]+ GiB: .*\(planned for [\d.]+ GiB of the [\d.]+ GiB asked, 80% of this machine's/m)
    // Weights in a form it does not read are not taken for "no weights": refused, saying what they are.
    writeFileSync(join(dir, 'pytorch_model-00001-of-00002.bin'), 'x')
    writeFileSync(join(dir, 'training_args.bin'), 'x')
    const pickle = await cli('info', '--model', dir, '--backend', 'cpu')
    expect(pickle.code).toBe(1)
    expect(pickle.err.join('\n')).toMatch(
      /no model\.safetensors or model\.safetensors\.index\.json in this folder; it has pytorch_model-00001-of-00002\.bin: PyTorch's pickle format, .*save_pretrained\(/,
    )
  })

  it('forward writes logits, router logits, top-k, losses and gradients that match the reference', async () => {
    const meta = JSON.parse(readFileSync(join(FIX, 'mixtral/expected.json'), 'utf8'))
    const c = meta.cases[0]
    const input = join(tmp, 'in.json')
    writeFileSync(input, JSON.stringify({ input_ids: c.input_ids, labels: c.labels }))
    const outFile = join(tmp, 'out.safetensors')
    const r = await cli('forward', '--model', join(FIX, 'mixtral'), '--input', input, '--out', outFile, '--grads', '--backend', 'wasm')
    expect(r.err.filter((l) => !l.startsWith('backend:'))).toEqual([])
    expect(r.code).toBe(0)
    const got = loadSafetensors(outFile).tensors
    const exp = loadSafetensors(join(FIX, 'mixtral/expected.safetensors')).tensors
    expect(got.get('logits')!.shape).toEqual([2, 8, 128])
    const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
      let m = 0
      for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
      return m
    }
    expect(maxDiff(got.get('logits')!.data, exp.get('case0.logits')!.data)).toBeLessThan(1e-4)
    for (const i of [0, 1]) {
      expect(got.get(`topk.${i}`)!.dtype).toBe('I32')
      expect(Array.from(got.get(`topk.${i}`)!.data)).toEqual(Array.from(exp.get(`case0.topk_indices.layer${i}`)!.data))
      expect(maxDiff(got.get(`router_logits.${i}`)!.data, exp.get(`case0.router_logits.layer${i}`)!.data)).toBeLessThan(1e-4)
    }
    expect(got.get('loss')!.shape).toEqual([])
    expect(got.get('loss')!.data[0]).toBeCloseTo(c.total_loss, 5)
    expect(got.get('aux_loss')!.data[0]).toBeCloseTo(c.aux_loss, 5)
    expect(got.get('z_loss')!.data[0]).toBeCloseTo(c.router_z_loss, 4)
    for (const name of meta.param_names as string[]) {
      const g = got.get(`grad.${name}`)
      expect(g, name).toBeDefined()
      const e = exp.get(`case0.grad.${name}`)!.data
      const scale = Math.max(...Array.from(e, Math.abs))
      expect(maxDiff(g!.data, e), name).toBeLessThanOrEqual(1e-4 * scale + 1e-3 * scale)
    }
  })

  it('forward without labels writes logits and routing only', async () => {
    const input = join(tmp, 'nolabels.json')
    writeFileSync(input, JSON.stringify({ input_ids: [[1, 2, 3]] }))
    const outFile = join(tmp, 'nolabels.safetensors')
    const r = await cli('forward', '--model', join(FIX, 'olmoe'), '--input', input, '--out', outFile, '--backend', 'cpu')
    expect(r.code).toBe(0)
    const got = loadSafetensors(outFile).tensors
    expect([...got.keys()].sort()).toEqual(['logits', 'router_logits.0', 'router_logits.1', 'topk.0', 'topk.1'])
  })

  it('generate --greedy --json prints the prompt and the new tokens last', async () => {
    const meta = JSON.parse(readFileSync(join(FIX, 'qwen2_moe/expected.json'), 'utf8'))
    const g = meta.cases[1].generate
    const r = await cli(
      'generate',
      '--model',
      join(FIX, 'qwen2_moe'),
      '--prompt-ids',
      g.prompt_ids.join(','),
      '--max-new-tokens',
      '8',
      '--greedy',
      '--json',
      '--backend',
      'cpu',
    )
    expect(r.code).toBe(0)
    expect(JSON.parse(r.out[r.out.length - 1])).toMatchObject({ output_ids: [...g.prompt_ids, ...g.new_token_ids], paging: null })
  })

  it("generate --prompt TEXT reads the text with the model's tokenizer, and prints what it wrote as text", async () => {
    const model = join(__dirname, '../../../resources/default-model')
    const byText = await cli(
      'generate',
      '--model',
      model,
      '--prompt',
      'The capital of France is',
      '--max-new-tokens',
      '4',
      '--greedy',
      '--json',
    )
    expect(byText.code, byText.err.join('\n')).toBe(0)
    const got = JSON.parse(byText.out.at(-1)!)
    // The same ids as the tokenizer's, given as --prompt-ids: the same tokens and text.
    const { loadTokenizer } = await import('../../../src/main/data/tokenizer')
    const tok = await loadTokenizer(model)
    const ids = [...(tok.addsBos && tok.bosId !== null ? [tok.bosId] : []), ...tok.encode('The capital of France is')]
    expect(got.output_ids.slice(0, ids.length)).toEqual(ids)
    const byIds = await cli('generate', '--model', model, '--prompt-ids', ids.join(','), '--max-new-tokens', '4', '--greedy', '--json')
    expect(JSON.parse(byIds.out.at(-1)!)).toMatchObject({ output_ids: got.output_ids, text: got.text })
    expect(got.text).toBe(tok.decode(got.output_ids.slice(ids.length), true))
    const plain = await cli('generate', '--model', model, '--prompt', 'The capital of France is', '--max-new-tokens', '4', '--greedy')
    expect(plain.out).toEqual([`text: ${JSON.stringify(got.text)}`, `new token ids: ${got.output_ids.slice(ids.length).join(',')}`])
    // Neither or both: said which to give; text for a model without a tokenizer: refused, with what to give
    for (const args of [[], ['--prompt', 'a', '--prompt-ids', '1']]) {
      const r = await cli('generate', '--model', model, ...args, '--max-new-tokens', '2')
      expect(r.code).toBe(2)
      expect(r.err[0]).toMatch(/give the prompt as --prompt TEXT or as --prompt-ids 1,2,3 \(one of them\)/)
    }
    const noTok = await cli('generate', '--model', join(FIX, 'mixtral'), '--prompt', 'hi', '--max-new-tokens', '2')
    expect(noTok.code).toBe(2)
    expect(noTok.err[0]).toMatch(/--prompt: .* has no tokenizer\.json to read text with; give --prompt-ids instead/)
    // A tokenizer that does not load: text refused, saying so; ids still generate (without the text)
    const broken = mkdtempSync(join(tmpdir(), 'moe-gen-tok-'))
    for (const f of ['config.json', 'model.safetensors']) writeFileSync(join(broken, f), readFileSync(join(FIX, 'mixtral', f)))
    writeFileSync(join(broken, 'tokenizer.json'), '{not json')
    const badText = await cli('generate', '--model', broken, '--prompt', 'hi', '--max-new-tokens', '2', '--backend', 'cpu')
    expect(badText.code).toBe(2)
    expect(badText.err[0]).toMatch(/--prompt: .*'s tokenizer does not load \(.*\); give --prompt-ids instead/)
    const byIdsOnly = await cli(
      'generate',
      '--model',
      broken,
      '--prompt-ids',
      '1,2',
      '--max-new-tokens',
      '2',
      '--greedy',
      '--backend',
      'cpu',
    )
    expect(byIdsOnly.code, byIdsOnly.err.join('\n')).toBe(0)
    expect(byIdsOnly.out).toEqual([expect.stringMatching(/^new token ids: \d+,\d+$/)])
  })

  it('generate samples reproducibly with a seed', async () => {
    const args = [
      'generate',
      '--model',
      join(FIX, 'olmoe'),
      '--prompt-ids',
      '3,4,5',
      '--max-new-tokens',
      '6',
      '--temperature',
      '0.9',
      '--top-k',
      '20',
      '--seed',
      '7',
      '--json',
      '--backend',
      'cpu',
    ]
    const a = await cli(...args)
    const b = await cli(...args)
    expect(a.code).toBe(0)
    expect(JSON.parse(a.out.at(-1)!).output_ids).toHaveLength(9)
    expect(JSON.parse(a.out.at(-1)!).output_ids).toEqual(JSON.parse(b.out.at(-1)!).output_ids)
  })

  it('generate with offloaded experts prints the reference tokens and the offload statistics', async () => {
    const meta = JSON.parse(readFileSync(join(FIX, 'mixtral/expected.json'), 'utf8'))
    const g = meta.cases[0].generate
    const r = await cli(
      'generate',
      '--model',
      join(FIX, 'mixtral'),
      '--prompt-ids',
      g.prompt_ids.join(','),
      '--max-new-tokens',
      '8',
      '--greedy',
      '--json',
      '--offload-budget',
      '128KiB',
      '--expert-dtype',
      'lazy',
      '--backend',
      'cpu',
    )
    expect(r.code).toBe(0)
    const json = JSON.parse(r.out.at(-1)!)
    expect(json).toMatchObject({
      output_ids: [...g.prompt_ids, ...g.new_token_ids],
      backend: 'cpu',
      paging: { budgetBytes: 128 * 1024, storage: 'lazy' },
    })
    expect(json.paging.misses).toBeGreaterThan(0)
    for (const k of ['load_ms', 'first_token_ms', 'decode_tokens_per_s']) expect(json[k], k).toBeGreaterThanOrEqual(0)
    expect(r.err.join('\n')).toMatch(
      /8 tokens in [\d.]+ s \(loaded in [\d.]+ s; first token after [\d.]+ s, then [\d.]+ tokens\/s; backend cpu/,
    )
    expect(r.err.join('\n')).toMatch(/plan: fits with paging: .* the embedding gathered from the host, lm_head paged in \d+ chunks?/)
    expect(r.err.join('\n')).toMatch(/paging: budget 128\.0 KiB; .* lazy host storage/)
    expect(r.err.join('\n')).toMatch(/experts hit rate \d+\.\d% \(\d+ hits, \d+ misses, counted per expert\)/)
  })

  it('--version says the version, and that this code runs unbuilt (the built CLI gives its build: e2e/server.spec.ts)', async () => {
    const { version } = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string }
    for (const flag of ['--version', '-V']) {
      const r = await cli(flag)
      expect(r.code).toBe(0)
      expect(r.out).toEqual([`MoE Workbench ${version} (run from source)`])
    }
  })

  it('bad arguments give one line and exit 2', async () => {
    const cases: [string[], RegExp][] = [
      [['frobnicate'], /unknown command "frobnicate"/],
      [['--workspace', '/tmp/x', 'frobnicate'], /unknown command "--workspace"/],
      [
        ['generate', '--model', join(FIX, 'mixtral'), '--prompt-ids', '1,2', '--max-new-tokens', '100000000', '--greedy'],
        /--max-new-tokens: prompt \(2\) \+ new tokens \(100000000\) exceed the model's \d+ positions/,
      ],
      [
        ['generate', '--model', join(FIX, 'mixtral'), '--prompt-ids', '1', '--max-new-tokens', '2', '--temperature', '-1'],
        /--temperature: "-1" must be a number > 0/,
      ],
      [['generate', '--model', join(FIX, 'mixtral'), '--prompt-ids', '1', '--max-new-tokens', '-3'], /--max-new-tokens: "-3" is not/],
      [
        ['generate', '--model', join(FIX, 'mixtral'), '--prompt-ids', '1', '--temperature', '-x'],
        /--temperature -x: write a value that starts with "-" after "=", as --temperature=-x/,
      ],
      [['info'], /--model is required/],
      [['info', '--model', '/nonexistent/dir'], /is not a folder/],
      [
        ['info', '--model', FIX, '--bogus'],
        /^moe-workbench info: --bogus is not an option of moe-workbench info \(see moe-workbench info --help for its options\)$/,
      ],
      [
        ['info', '--modle', FIX],
        /^moe-workbench info: --modle is not an option of moe-workbench info: did you mean --model\? \(see moe-workbench info --help for its options\)$/,
      ],
      [
        ['generate', '--model', join(FIX, 'mixtral'), '--prompt-ids', '1,x,3', '--max-new-tokens', '2', '--greedy'],
        /"x" \(item 2\) is not a token id/,
      ],
      [['generate', '--model', join(FIX, 'mixtral'), '--prompt-ids', '1,2', '--max-new-tokens', '-1', '--greedy'], /--max-new-tokens/],
      [
        ['generate', '--model', join(FIX, 'mixtral'), '--prompt-ids', '1,999', '--max-new-tokens', '2', '--greedy', '--backend', 'cpu'],
        /token id 999 is outside the vocabulary/,
      ],
      [['info', '--model', join(FIX, 'mixtral'), '--backend', 'tpu'], /unknown backend "tpu"/],
      [
        ['generate', '--model', join(FIX, 'mixtral'), '--prompt-ids', '1', '--max-new-tokens', '2', '--top-p', '1.5'],
        /--top-p: "1\.5" must be a number in \(0, 1\]/,
      ],
      [
        ['generate', '--model', join(FIX, 'mixtral'), '--prompt-ids', '1', '--max-new-tokens', '2', '--offload-budget', 'lots'],
        /--offload-budget: "lots" is not a size/,
      ],
      [
        [
          'generate',
          '--model',
          join(FIX, 'mixtral'),
          '--prompt-ids',
          '1',
          '--max-new-tokens',
          '2',
          '--offload-budget',
          '1MB',
          '--expert-dtype',
          'fp4',
        ],
        /--expert-dtype: "fp4" must be one of/,
      ],
    ]
    for (const [argv, pattern] of cases) {
      const r = await cli(...argv)
      expect(r.code, argv.join(' ')).toBe(2)
      expect(r.err, argv.join(' ')).toHaveLength(1)
      expect(r.err[0]).toMatch(pattern)
    }
  })

  it('bad files give one line naming the file and the problem, and exit 1', async () => {
    const notModel = mkdtempSync(join(tmpdir(), 'moe-notmodel-'))
    let r = await cli('info', '--model', notModel, '--backend', 'cpu')
    expect(r.code).toBe(1)
    expect(r.err.at(-1)).toMatch(/config\.json: not found/)

    writeFileSync(join(notModel, 'config.json'), JSON.stringify({ model_type: 'llama' }))
    r = await cli('info', '--model', notModel, '--backend', 'cpu')
    expect(r.code).toBe(1)
    expect(r.err.at(-1)).toMatch(/model_type "llama" is not supported/)

    const input = join(tmp, 'bad.json')
    writeFileSync(input, JSON.stringify({ input_ids: [[1, 2], [3]] }))
    r = await cli('forward', '--model', join(FIX, 'mixtral'), '--input', input, '--out', join(tmp, 'x.safetensors'), '--backend', 'cpu')
    expect(r.code).toBe(1)
    expect(r.err.at(-1)).toMatch(/bad\.json: input_ids\.1: 1 tokens, row 0 has 2/)

    writeFileSync(input, JSON.stringify({ input_ids: [[1, 2]], labels: [[1, 'a']] }))
    r = await cli('forward', '--model', join(FIX, 'mixtral'), '--input', input, '--out', join(tmp, 'x.safetensors'), '--backend', 'cpu')
    expect(r.code).toBe(1)
    expect(r.err.at(-1)).toMatch(/labels\.0\.1/)

    // A checkpoint with NaN weights: named by info and forward instead of a NaN loss and exit 0.
    const nan = mkdtempSync(join(tmpdir(), 'moe-nan-'))
    for (const f of ['config.json']) writeFileSync(join(nan, f), readFileSync(join(FIX, 'mixtral', f)))
    const { tensors } = loadSafetensors(join(FIX, 'mixtral', 'model.safetensors'))
    const broken = new Map([...tensors].map(([n, t]) => [n, { dtype: 'F32' as const, shape: t.shape, data: t.data as Float32Array }]))
    const w = broken.get('model.layers.1.self_attn.k_proj.weight')!
    w.data = Float32Array.from(w.data)
    w.data[5] = NaN
    w.data[9] = Infinity
    saveSafetensors(join(nan, 'model.safetensors'), broken)
    r = await cli('info', '--model', nan, '--backend', 'cpu')
    expect(r.code).toBe(1)
    expect(r.out.join('\n')).toMatch(/weights {4}1 tensor\(s\) hold NaN or infinite values/)
    expect(r.err.at(-1)).toMatch(
      /tensor "model\.layers\.1\.self_attn\.k_proj\.weight" holds 2 NaN or infinite value\(s\) \(the first at flat index 5\)/,
    )
    writeFileSync(input, JSON.stringify({ input_ids: [[1, 2]], labels: [[1, 2]] }))
    r = await cli('forward', '--model', nan, '--input', input, '--out', join(tmp, 'x.safetensors'), '--backend', 'cpu')
    expect(r.code).toBe(1)
    expect(r.err.at(-1)).toMatch(/k_proj\.weight" holds 2 NaN or infinite/)

    writeFileSync(input, 'not json\nsecond line')
    r = await cli('forward', '--model', join(FIX, 'mixtral'), '--input', input, '--out', join(tmp, 'x.safetensors'), '--backend', 'cpu')
    expect(r.code).toBe(1)
    // Where the parser stopped, by line and column, on one line (V8's message quotes the file, newlines and all).
    expect(r.err.at(-1)).toMatch(/bad\.json: not valid JSON at line 1, column 2: unexpected "o" \("not json"\); a trailing comma/)
    // A run config: by line and column too (it gave "at position 46").
    writeFileSync(input, '{\n  "maxSteps": 3,\n  "batchSize": 2,\n}\n')
    r = await cli('train', '--model', join(FIX, 'mixtral'), '--dataset', 'd', '--config', input, '--workspace', tmp, '--backend', 'cpu')
    expect(r.code).toBe(1)
    expect(r.err.at(-1)).toMatch(
      /bad\.json: not valid JSON at line 4, column 1: .*\("}"\); a trailing comma or a missing one is the usual cause$/,
    )
    // A usage error that already says where to look is not sent to --help as well.
    r = await cli('train', '--model', join(FIX, 'mixtral'), '--dataset', 'no-such-dataset', '--workspace', tmp, '--backend', 'cpu')
    expect(r.code).toBe(2)
    expect(r.err.at(-1)).toMatch(/\(see moe-workbench dataset list\)$/)
  })
})
