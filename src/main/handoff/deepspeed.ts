/**
 * DeepSpeed configs for a handed-off run and the GPU memory it needs per device.
 *
 * The configs are the ones the targets ship (LLaMA-Factory 0.9.6.dev0 examples/deepspeed/
 * ds_z2_config.json, ds_z3_config.json, ds_z3_offload_config.json; the same keys axolotl 0.18.0's
 * deepspeed_configs/ use), with "auto" values the HF Trainer fills from the trainer config.
 *
 * The estimate is the usual mixed-precision count (ZeRO paper, Rajbhandari et al. 2020): per
 * parameter 2 bytes of bf16 weights; per trained parameter 2 bytes of gradients and 12 of fp32
 * master weights and Adam moments; ZeRO-2 shards gradients and optimiser state over the devices,
 * ZeRO-3 the weights too. Activations with gradient checkpointing: each layer's bf16 input kept,
 * one layer's full activations (Korthikanti et al. 2022: 34·h + 5·a·s bytes per token) and the
 * float32 logits with their gradient. An estimate: real use adds the CUDA context, allocator
 * fragmentation and communication buffers, so the choice keeps 20% of the device free.
 */
import type { MoeConfig } from '../../shared/modelConfig'
import { countParams, paramSpecs } from '../../shared/modelConfig'
import type { RunConfig } from '../../shared/runConfig'
import type { ExpertSelection } from '../../shared/runs'
import { isTrainable } from '../train/freeze'
import { loraTargetNames } from '../train/lora'

export type ZeroStage = 2 | 3

export interface DeepSpeedChoice {
  stage: ZeroStage
  /** ZeRO-3 with parameters and optimiser state offloaded to host memory. */
  offload: boolean
  file: string
  config: Record<string, unknown>
  /** Why this stage. */
  reason: string
}

export interface MemoryEstimate {
  /** Bytes per device for the chosen stage, and for the others. */
  perDevice: Record<'zero2' | 'zero3' | 'zero3Offload', number>
  weights: number
  trainableParams: number
  totalParams: number
  activations: number
}

const FP16_BLOCK = { enabled: 'auto', loss_scale: 0, loss_scale_window: 1000, initial_scale_power: 16, hysteresis: 2, min_loss_scale: 1 }
const COMMON = {
  train_batch_size: 'auto',
  train_micro_batch_size_per_gpu: 'auto',
  gradient_accumulation_steps: 'auto',
  gradient_clipping: 'auto',
  zero_allow_untested_optimizer: true,
  fp16: FP16_BLOCK,
  bf16: { enabled: 'auto' },
}

export function zeroConfig(stage: ZeroStage, offload = false): Record<string, unknown> {
  if (stage === 2)
    return {
      ...COMMON,
      zero_optimization: {
        stage: 2,
        allgather_partitions: true,
        allgather_bucket_size: 5e8,
        overlap_comm: false,
        reduce_scatter: true,
        reduce_bucket_size: 5e8,
        contiguous_gradients: true,
        round_robin_gradients: true,
      },
    }
  return {
    ...COMMON,
    zero_optimization: {
      stage: 3,
      ...(offload && { offload_optimizer: { device: 'cpu', pin_memory: true }, offload_param: { device: 'cpu', pin_memory: true } }),
      overlap_comm: false,
      contiguous_gradients: true,
      sub_group_size: 1e9,
      reduce_bucket_size: 'auto',
      stage3_prefetch_bucket_size: 'auto',
      stage3_param_persistence_threshold: 'auto',
      stage3_max_live_parameters: 1e9,
      stage3_max_reuse_distance: 1e9,
      stage3_gather_16bit_weights_on_model_save: true,
    },
  }
}

/** Parameters a run trains: LoRA matrices, or the weights its freeze policy (or ESFT's chosen experts) leaves trainable. */
export function trainableParams(model: MoeConfig, run: RunConfig, esft?: ExpertSelection): number {
  const specs = paramSpecs(model)
  if (run.method === 'lora') {
    const shapes = new Map(specs.map((s) => [s.name, s.shape]))
    return loraTargetNames(specs, run.lora.targets).reduce((n, name) => {
      const [out, inp] = shapes.get(name)!
      return n + run.lora.rank * (out + inp)
    }, 0)
  }
  return specs.filter((s) => isTrainable(s, run, model, esft)).reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0)
}

/** GPU memory per device for the run on `devices` devices with `microBatch` rows of `seqLen` tokens each. */
export function estimateMemory(
  model: MoeConfig,
  run: RunConfig,
  devices: number,
  microBatch: number,
  seqLen: number,
  esft?: ExpertSelection,
): MemoryEstimate {
  const total = countParams(model).total
  const trainable = trainableParams(model, run, esft)
  const weights = 2 * total
  const H = model.hiddenSize
  const tokens = microBatch * seqLen
  const activations = tokens * H * 2 * model.numLayers + tokens * (34 * H + 5 * model.numHeads * seqLen) + tokens * model.vocabSize * 4 * 2
  const perTrainable = 16 // bf16 gradient 2 + fp32 master 4 + Adam m, v 8 (+ its bf16 weight counted in `weights` when trained)
  const optimiser = (perTrainable - 2) * trainable
  const grads = 2 * trainable
  const loraExtra = run.method === 'lora' ? 2 * trainable : 0 // adapters are weights besides the base model's
  const zero2 = weights + loraExtra + (grads + optimiser) / devices + activations
  const zero3 = (weights + loraExtra + grads + optimiser) / devices + activations
  // Offload keeps one layer's gathered bf16 weights and the activations on the device.
  const layerWeights = weights / Math.max(1, model.numLayers)
  const zero3Offload = layerWeights + activations
  return { perDevice: { zero2, zero3, zero3Offload }, weights, trainableParams: trainable, totalParams: total, activations }
}

const HEADROOM = 0.8

/** A memory size for the handoff's words: GiB, or MiB under one (a small model read "about 0.0 GiB"). */
export function gib(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`
}

/** ZeRO-2 when it fits the device, else ZeRO-3, else ZeRO-3 with offload to host memory. */
export function chooseDeepSpeed(m: MemoryEstimate, gpuBytes: number): DeepSpeedChoice {
  const budget = HEADROOM * gpuBytes
  if (m.perDevice.zero2 <= budget)
    return {
      stage: 2,
      offload: false,
      file: 'ds_z2_config.json',
      config: zeroConfig(2),
      reason: `ZeRO-2 (about ${gib(m.perDevice.zero2)} per device) fits ${Math.round(HEADROOM * 100)}% of ${gib(gpuBytes)}: the bf16 weights (${gib(m.weights)}) stay whole on every device, gradients and optimiser state are sharded`,
    }
  if (m.perDevice.zero3 <= budget)
    return {
      stage: 3,
      offload: false,
      file: 'ds_z3_config.json',
      config: zeroConfig(3),
      reason: `the bf16 weights alone are ${gib(m.weights)}; ZeRO-2 would need about ${gib(m.perDevice.zero2)} per device, more than ${Math.round(HEADROOM * 100)}% of ${gib(gpuBytes)}, so ZeRO-3 shards the weights too (about ${gib(m.perDevice.zero3)} per device)`,
    }
  return {
    stage: 3,
    offload: true,
    file: 'ds_z3_offload_config.json',
    config: zeroConfig(3, true),
    reason: `even ZeRO-3 needs about ${gib(m.perDevice.zero3)} per device (more than ${Math.round(HEADROOM * 100)}% of ${gib(gpuBytes)}): parameters and optimiser state are offloaded to host memory (slow; add devices to avoid it)`,
  }
}
