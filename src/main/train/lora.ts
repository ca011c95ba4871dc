/**
 * LoRA adapters (Hu et al. 2021): y = x·Wᵀ + (α/r)·dropout(x)·Aᵀ·Bᵀ, A (r, in) initialised like
 * PEFT (Kaiming-uniform), B (out, r) zero, so training starts from the base model exactly.
 * Adapters save in PEFT's layout (adapter_model.safetensors + adapter_config.json) and merge
 * into the base weights at export.
 */
import * as tf from '@tensorflow/tfjs'
import type { ParamSpec } from '../../shared/modelConfig'
import type { LoraTarget, RunConfig } from '../../shared/runConfig'
import type { MoeModel } from '../engine/model'
import { dropout, linear, ownedVariable, Rng, type Weights } from '../engine/ops'
import type { TensorToWrite } from '../engine/safetensors'

const KIND_OF_TARGET: Record<LoraTarget, ParamSpec['kind'][]> = {
  attention: ['attn'],
  experts: ['expert'],
  shared_expert: ['shared_expert'],
  router: ['router'],
  dense_mlp: ['dense_mlp'],
  lm_head: ['lm_head'],
}

/** Names of the 2-D weights that get adapters. */
export function loraTargetNames(specs: ParamSpec[], targets: LoraTarget[]): string[] {
  const kinds = new Set(targets.flatMap((t) => KIND_OF_TARGET[t]))
  return specs.filter((s) => kinds.has(s.kind) && s.shape.length === 2).map((s) => s.name)
}

/** PEFT's tensor name for an adapter matrix of weight `name`. */
export function peftName(name: string, which: 'A' | 'B'): string {
  return `base_model.model.${name.replace(/\.weight$/, '')}.lora_${which}.weight`
}

export class LoraAdapters {
  readonly rank: number
  readonly alpha: number
  readonly dropout: number
  readonly targets: LoraTarget[]
  readonly A = new Map<string, tf.Variable>()
  readonly B = new Map<string, tf.Variable>()

  constructor(
    readonly model: MoeModel,
    cfg: RunConfig['lora'],
    seed: number,
  ) {
    this.rank = cfg.rank
    this.alpha = cfg.alpha
    this.dropout = cfg.dropout
    this.targets = cfg.targets
    const rng = new Rng(seed ^ 0x10a4)
    const shapes = new Map(model.specs.map((s) => [s.name, s.shape]))
    for (const name of loraTargetNames(model.specs, cfg.targets)) {
      const [out, inp] = shapes.get(name) as [number, number]
      if (cfg.rank > Math.min(out, inp)) throw new Error(`lora.rank ${cfg.rank} exceeds the smaller side of ${name} [${out}, ${inp}]`)
      const bound = 1 / Math.sqrt(inp) // kaiming_uniform(a=√5) as PEFT initialises lora_A
      this.A.set(name, ownedVariable(tf.tensor2d(rng.uniformArray(cfg.rank * inp, -bound, bound), [cfg.rank, inp]), true, `lora_A.${name}`))
      this.B.set(name, ownedVariable(tf.zeros([out, cfg.rank]), true, `lora_B.${name}`))
    }
    if (this.A.size === 0)
      throw new Error(`lora.targets ${JSON.stringify(cfg.targets)} match no layer of this ${model.config.family} model`)
  }

  get scale(): number {
    return this.alpha / this.rank
  }

  /** The trainable variables, by PEFT name. */
  variables(): Map<string, tf.Variable> {
    const out = new Map<string, tf.Variable>()
    for (const [name, a] of this.A) {
      out.set(peftName(name, 'A'), a)
      out.set(peftName(name, 'B'), this.B.get(name)!)
    }
    return out
  }

  /** Wraps a weight source so targeted linear layers add their low-rank path. */
  wrap(base: Weights, opts: { training: boolean; rng?: Rng }): Weights {
    return {
      get: base.get,
      afterMoe: base.afterMoe,
      embed: base.embed,
      linear: (x, name, bias) => {
        const y = base.linear(x, name, bias)
        const a = this.A.get(name)
        if (!a) return y
        const xin = opts.training && this.dropout > 0 && opts.rng ? dropout(x, this.dropout, opts.rng) : x
        const low = linear(linear(xin, a), this.B.get(name)!) // (N, out)
        return tf.add(y, tf.mul(low, this.scale)) as tf.Tensor2D
      },
      matrix: (name) => (this.A.has(name) ? undefined : base.matrix?.(name)),
      lowRank: (name) => {
        const a = this.A.get(name)
        const baseMatrix = a && base.matrix?.(name)
        if (!a || !baseMatrix || (opts.training && this.dropout > 0 && opts.rng)) return undefined
        return { base: baseMatrix, a: a as tf.Tensor2D, b: this.B.get(name)! as tf.Tensor2D, scale: this.scale }
      },
    }
  }

  /** Base weights with the adapters folded in: W + (α/r)·B·A (read back asynchronously; hold the device lock). */
  async mergedWeights(): Promise<Map<string, Float32Array>> {
    if (this.model.paging)
      throw new Error('merging LoRA adapters in memory needs the base model resident (export merges paged models tensor by tensor)')
    const out = new Map<string, Float32Array>()
    for (const [name, v] of this.model.params) out.set(name, (await v.data()) as Float32Array)
    for (const [name, a] of this.A) {
      const merged = tf.tidy(() => tf.add(this.model.params.get(name)!, tf.mul(tf.matMul(this.B.get(name)!, a), this.scale)))
      out.set(name, (await merged.data()) as Float32Array)
      merged.dispose()
    }
    return out
  }

  /** PEFT adapter files: tensors and adapter_config.json (reading back asynchronously: every backend). */
  async toPeft(baseModelPath: string): Promise<{ tensors: Map<string, TensorToWrite>; config: Record<string, unknown> }> {
    const tensors = new Map<string, TensorToWrite>()
    for (const [n, v] of this.variables()) tensors.set(n, { dtype: 'F32', shape: v.shape, data: (await v.data()) as Float32Array })
    const modules = [
      ...new Set(
        [...this.A.keys()].map((n) =>
          n
            .replace(/\.weight$/, '')
            .split('.')
            .pop()!,
        ),
      ),
    ]
    const config = {
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      base_model_name_or_path: baseModelPath,
      r: this.rank,
      lora_alpha: this.alpha,
      lora_dropout: this.dropout,
      target_modules: [...this.A.keys()].map((n) => n.replace(/\.weight$/, '')),
      bias: 'none',
      fan_in_fan_out: false,
      moe_workbench: { targets: this.targets, modules },
    }
    return { tensors, config }
  }

  /** Loads adapter values saved by toPeft (shapes checked). */
  load(tensors: Map<string, { shape: number[]; data: Float32Array | Int32Array }>): void {
    for (const [n, v] of this.variables()) {
      const t = tensors.get(n)
      if (!t) throw new Error(`adapter file lacks ${n}`)
      if (t.shape.join(',') !== v.shape.join(',')) throw new Error(`adapter ${n} is [${t.shape}], expected [${v.shape}]`)
      // assign() shares the new tensor's data; the tensor itself is ours to dispose.
      const value = tf.tensor(t.data as Float32Array, v.shape)
      v.assign(value)
      value.dispose()
    }
  }

  dispose(): void {
    for (const v of [...this.A.values(), ...this.B.values()]) v.dispose()
  }
}
