/**
 * Two small TF.js helpers the engine's ops and its own wasm kernels share: a typed tf.customGrad,
 * and running a kernel by name (the engine registers its own on the wasm backend).
 */
import * as tf from '@tensorflow/tfjs'

export type GradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor | tf.Tensor[]

/** tf.customGrad with a typed signature: f(inputs, save) → {value, gradFunc}. */
export function custom(
  f: (inputs: tf.Tensor[], save: tf.GradSaveFunc) => { value: tf.Tensor; gradFunc: GradFunc },
  ...inputs: tf.Tensor[]
): tf.Tensor {
  const wrapped = (...args: (tf.Tensor | tf.GradSaveFunc)[]): { value: tf.Tensor; gradFunc: GradFunc } =>
    f(args.slice(0, -1) as tf.Tensor[], args[args.length - 1] as tf.GradSaveFunc)
  return tf.customGrad(wrapped as unknown as Parameters<typeof tf.customGrad>[0])(...inputs)
}

/** Runs the kernel registered as `kernel` for the current backend. */
export function runKernel(kernel: string, inputs: Record<string, tf.Tensor>, attrs: object): tf.Tensor | tf.Tensor[] {
  return (tf.engine() as unknown as { runKernel(k: string, i: object, a: object): tf.Tensor | tf.Tensor[] }).runKernel(
    kernel,
    inputs,
    attrs,
  )
}
