import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  DTYPE_SIZES,
  SafetensorsError,
  decodeToFloat32,
  decodeToInt32,
  encodeFromFloat32,
  loadSafetensors,
  openCheckpointTensors,
  otherWeightsNote,
  hasCheckpointFiles,
  readHeader,
  readTensor,
  readTensorBytes,
  saveCheckpointTensors,
  saveSafetensors,
  writeCheckpointStream,
  type DType,
  type TensorToWrite,
} from '../../../src/main/engine/safetensors'

const FIXTURES = fileURLToPath(new URL('../../fixtures/moe-reference/', import.meta.url))
const MODELS = ['mixtral', 'olmoe', 'qwen2_moe'] as const
const FIXTURE_FILES = [
  ...MODELS.flatMap((m) => [join(m, 'model.safetensors'), join(m, 'expected.safetensors')]),
  join('mixtral', 'model-bf16.safetensors'),
]

interface ExpectedJson {
  param_shapes: Record<string, number[]>
  tensor_shapes: Record<string, number[]>
  cases: { name: string; input_ids: number[][]; labels: number[][] }[]
}

let tmp = ''
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'safetensors-test-'))
})
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true })
})

/** A fresh empty folder under the test's temporary folder. */
function freshDir(name: string): string {
  const dir = join(tmp, name)
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  return dir
}

function fixture(rel: string): string {
  return join(FIXTURES, rel)
}

function expectedJson(model: string): ExpectedJson {
  return JSON.parse(readFileSync(fixture(join(model, 'expected.json')), 'utf8')) as ExpectedJson
}

function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1)
}

function bitsOf(x: Float32Array): Uint32Array {
  return new Uint32Array(x.buffer, x.byteOffset, x.length)
}

function f32FromBits(bits: number[]): Float32Array {
  return new Float32Array(new Uint32Array(bits).buffer)
}

function u16(bytes: Uint8Array): number[] {
  return Array.from(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2))
}

/** Writes a file by hand: u64 header length (or `lengthField`), the header text, the data. */
function writeRaw(name: string, header: string | Uint8Array, data: Uint8Array, lengthField?: bigint): string {
  const h = typeof header === 'string' ? Buffer.from(header, 'utf8') : Buffer.from(header)
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(lengthField ?? BigInt(h.length))
  const file = join(tmp, name)
  writeFileSync(file, Buffer.concat([len, h, data]))
  return file
}

function catchError(f: () => unknown): SafetensorsError {
  try {
    f()
  } catch (e) {
    expect(e).toBeInstanceOf(SafetensorsError)
    return e as SafetensorsError
  }
  throw new Error('expected a SafetensorsError, nothing was thrown')
}

function tempLeftovers(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.includes('.tmp-'))
}

// ---------------------------------------------------------------------------------------------

describe('reference fixtures', () => {
  it.each(FIXTURE_FILES)('reads %s completely and consistently', (rel) => {
    const file = fixture(rel)
    const h = readHeader(file)
    const raw = readFileSync(file)
    const headerLength = Number(raw.readBigUInt64LE(0))
    expect(h.dataStart).toBe(8 + headerLength)
    expect(h.dataStart % 8).toBe(0)
    expect(h.metadata.format).toBe('pt')
    expect(h.tensors.size).toBeGreaterThan(10)

    // Written by the Python library: contiguous ranges covering the whole data section.
    const ranges = [...h.tensors.values()].sort((a, b) => a.begin - b.begin)
    expect(ranges[0].begin).toBe(h.dataStart)
    for (let i = 1; i < ranges.length; i++) expect(ranges[i].begin).toBe(ranges[i - 1].end)
    expect(ranges[ranges.length - 1].end).toBe(raw.length)

    const { tensors, metadata } = loadSafetensors(file)
    expect(metadata).toEqual(h.metadata)
    expect([...tensors.keys()].sort()).toEqual([...h.tensors.keys()].sort())
    for (const [name, t] of tensors) {
      const info = h.tensors.get(name)!
      expect(t.shape).toEqual(info.shape)
      expect(t.data.length).toBe(numel(info.shape))
      expect(t.data).toBeInstanceOf(info.dtype === 'I32' ? Int32Array : Float32Array)
      if (t.data instanceof Float32Array) expect(t.data.every(Number.isFinite)).toBe(true)
    }
  })

  it('parses the mixtral header into absolute offsets', () => {
    const h = readHeader(fixture('mixtral/model.safetensors'))
    expect(h.dataStart).toBe(8 + 4544)
    expect(h.metadata).toEqual({ format: 'pt' })
    expect(h.tensors.get('lm_head.weight')).toEqual({
      name: 'lm_head.weight',
      dtype: 'F32',
      shape: [128, 48],
      begin: 4552,
      end: 4552 + 24576,
    })
    expect(h.tensors.get('model.embed_tokens.weight')).toMatchObject({ begin: 4552 + 24576, end: 4552 + 49152 })
    const bf16 = readHeader(fixture('mixtral/model-bf16.safetensors'))
    expect(bf16.metadata).toEqual({ format: 'pt', torch_dtype: 'bfloat16' })
    expect(bf16.tensors.get('lm_head.weight')).toMatchObject({
      dtype: 'BF16',
      shape: [128, 48],
      end: bf16.dataStart + 12288,
    })
  })

  it('reads values that match a by-hand read of the bytes', () => {
    const file = fixture('mixtral/model.safetensors')
    const h = readHeader(file)
    const raw = readFileSync(file)
    const info = h.tensors.get('model.layers.1.block_sparse_moe.experts.3.w2.weight')!
    const t = readTensor(h, info.name)
    for (const i of [0, 1, 17, t.data.length - 1]) expect(t.data[i]).toBe(raw.readFloatLE(info.begin + 4 * i))
  })

  it.each(MODELS)('%s: names and shapes agree with expected.json, and the I32 inputs with its cases', (model) => {
    const ref = expectedJson(model)
    const weights = readHeader(fixture(join(model, 'model.safetensors')))
    expect(Object.fromEntries([...weights.tensors].map(([n, t]) => [n, t.shape]))).toEqual(ref.param_shapes)
    const expected = loadSafetensors(fixture(join(model, 'expected.safetensors')))
    expect(Object.fromEntries([...expected.tensors].map(([n, t]) => [n, t.shape]))).toEqual(ref.tensor_shapes)
    for (const c of ref.cases) {
      const ids = expected.tensors.get(`${c.name}.input_ids`)!
      const labels = expected.tensors.get(`${c.name}.labels`)!
      expect(ids.dtype).toBe('I32')
      expect(ids.data).toBeInstanceOf(Int32Array)
      expect(Array.from(ids.data)).toEqual(c.input_ids.flat())
      expect(Array.from(labels.data)).toEqual(c.labels.flat())
      expect(Array.from(labels.data)).toContain(-100)
    }
  })

  it('mixtral BF16 weights are the F32 weights rounded to nearest even', () => {
    const f32 = readHeader(fixture('mixtral/model.safetensors'))
    const bf16 = readHeader(fixture('mixtral/model-bf16.safetensors'))
    expect([...bf16.tensors.keys()]).toEqual([...f32.tensors.keys()])
    let inexact = 0
    for (const name of f32.tensors.keys()) {
      const x = readTensor(f32, name).data as Float32Array
      const fileBits = u16(readTensorBytes(bf16, name))
      // Our encoder reproduces the file bit for bit.
      expect(u16(encodeFromFloat32('BF16', x))).toEqual(fileBits)
      // And the file is what an independent nearest-even rounding in float64 gives.
      const xb = bitsOf(x)
      const wrong: number[] = []
      for (let i = 0; i < x.length; i++) {
        const lo = (xb[i] & 0xffff0000) >>> 0
        const [vlo, vhi] = [f32FromBits([lo])[0], f32FromBits([lo + 0x10000])[0]]
        const [dlo, dhi] = [Math.abs(x[i] - vlo), Math.abs(vhi - x[i])]
        const pickHi = dhi < dlo || (dhi === dlo && ((lo >>> 16) & 1) === 1)
        if (fileBits[i] !== (pickHi ? lo + 0x10000 : lo) >>> 16) wrong.push(i)
      }
      expect(wrong).toEqual([])
      const y = readTensor(bf16, name)
      expect(y.dtype).toBe('BF16')
      const yd = y.data as Float32Array
      const tooFar: number[] = []
      for (let i = 0; i < x.length; i++) {
        if (!(Math.abs(yd[i] - x[i]) <= 2 ** -8 * Math.abs(x[i]))) tooFar.push(i)
        if (yd[i] !== x[i]) inexact++
      }
      expect(tooFar).toEqual([])
    }
    expect(inexact).toBeGreaterThan(1000)
  })

  it.each(FIXTURE_FILES)('re-saving %s gives the same bytes as the Python library', (rel) => {
    const file = fixture(rel)
    const { tensors, metadata } = loadSafetensors(file)
    const out = join(tmp, `resave-${basename(rel)}`)
    const toWrite = new Map<string, TensorToWrite>([...tensors].map(([n, t]) => [n, t]))
    saveSafetensors(out, toWrite, metadata)
    expect(readFileSync(out).equals(readFileSync(file))).toBe(true)
  })
})

// ---------------------------------------------------------------------------------------------

describe('F32 round trip', () => {
  it('is bit-exact, NaN payloads, -0, infinities and subnormals included', () => {
    const bits = [
      0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001, 0x7fa5a5a5, 0x00000001, 0x807fffff, 0x7f7fffff,
      0x3f800000, 0x3eaaaaab, 0xc0490fdb,
    ]
    const x = f32FromBits(bits)
    const file = join(tmp, 'f32.safetensors')
    saveSafetensors(file, { x: { dtype: 'F32', shape: [2, 7], data: x } })
    const h = readHeader(file)
    const viaRead = readTensor(h, 'x')
    expect(viaRead).toMatchObject({ dtype: 'F32', shape: [2, 7] })
    expect(Array.from(bitsOf(viaRead.data as Float32Array))).toEqual(bits)
    const viaLoad = loadSafetensors(file).tensors.get('x')!.data as Float32Array
    expect(Array.from(bitsOf(viaLoad))).toEqual(bits)
    expect(u16(readTensorBytes(h, 'x'))).toEqual(u16(new Uint8Array(new Uint32Array(bits).buffer)))
  })

  it('decodes unaligned byte views', () => {
    const x = new Float32Array([1.5, -2.25, 3e-39])
    const bytes = new Uint8Array(13)
    bytes.set(encodeFromFloat32('F32', x), 1)
    expect(Array.from(decodeToFloat32('F32', bytes.subarray(1)))).toEqual(Array.from(x))
    expect(() => decodeToFloat32('F32', bytes)).toThrow(RangeError)
  })
})

describe('F16', () => {
  const cases: [number, number][] = [
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff], // largest finite
    [65519, 0x7bff], // just below the halfway point to 65536
    [65520, 0x7c00], // halfway: ties to even, which is infinity
    [1e6, 0x7c00],
    [2 ** -14, 0x0400], // smallest normal, 6.103515625e-5
    [6.1e-5, 0x03ff], // just below it: largest subnormal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // half of it: ties to even (zero)
    [3 * 2 ** -25, 0x0002], // 1.5 units: ties to even (2)
    [0.75 * 2 ** -24, 0x0001],
    [2 ** -26, 0x0000],
    [1 / 3, 0x3555],
    [1 + 2 ** -11, 0x3c00], // tie, stays even
    [1 + 3 * 2 ** -11, 0x3c02], // tie, rounds up to even
    [-0, 0x8000],
    [0, 0x0000],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
  ]

  const hex = (x: number): string => `0x${x.toString(16).padStart(4, '0')}`

  it.each(cases.map(([v, h]) => [v, hex(h), h] as const))('encodes %s as %s', (value, _hex, half) => {
    expect(u16(encodeFromFloat32('F16', new Float32Array([value])))[0]).toBe(half)
  })

  it('encodes float32 values just above the zero-rounding boundary up to the smallest subnormal', () => {
    const justAbove = f32FromBits([0x33000001]) // 2^-25 * (1 + 2^-23)
    expect(u16(encodeFromFloat32('F16', justAbove))[0]).toBe(0x0001)
  })

  it('decodes known bit patterns exactly', () => {
    const halves = [0x7bff, 0x0400, 0x03ff, 0x0001, 0x8001, 0x3555, 0x3c00, 0xfc00, 0x7c00, 0x8000, 0x0000]
    const want = [65504, 2 ** -14, 1023 * 2 ** -24, 2 ** -24, -(2 ** -24), 0.333251953125, 1, -Infinity, Infinity, -0, 0]
    const got = decodeToFloat32('F16', new Uint8Array(new Uint16Array(halves).buffer))
    want.forEach((w, i) => expect(Object.is(got[i], w)).toBe(true))
    expect(got[0]).toBe(65504)
  })

  it('keeps NaN as NaN both ways', () => {
    const nans = f32FromBits([0x7fc00000, 0xffc00000, 0x7f800001])
    for (const h of u16(encodeFromFloat32('F16', nans))) {
      expect(h & 0x7c00).toBe(0x7c00)
      expect(h & 0x03ff).not.toBe(0)
    }
    const back = decodeToFloat32('F16', new Uint8Array(new Uint16Array([0x7e00, 0xfd01, 0x7c01]).buffer))
    expect(Array.from(back).every(Number.isNaN)).toBe(true)
  })

  it('round-trips every non-NaN half exactly', () => {
    const all = new Uint16Array(65536).map((_, i) => i)
    const decoded = decodeToFloat32('F16', new Uint8Array(all.buffer))
    const again = u16(encodeFromFloat32('F16', decoded))
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0
      if (!isNaN && again[h] !== h) expect(`0x${h.toString(16)} -> 0x${again[h].toString(16)}`).toBe('round trip')
      if (isNaN) expect(Number.isNaN(decoded[h])).toBe(true)
    }
  })

  it('writes and reads F16 tensors through files', () => {
    const x = new Float32Array([1 / 3, 65504, -6.1e-5, 0.1])
    const file = join(tmp, 'f16.safetensors')
    saveSafetensors(file, { x: { dtype: 'F16', shape: [4], data: x } })
    const h = readHeader(file)
    expect(h.tensors.get('x')).toMatchObject({ dtype: 'F16', end: h.dataStart + 8 })
    expect(u16(readTensorBytes(h, 'x'))).toEqual([0x3555, 0x7bff, 0x83ff, 0x2e66])
    expect(Array.from(readTensor(h, 'x').data)).toEqual([0.333251953125, 65504, -1023 * 2 ** -24, 0.0999755859375])
  })
})

describe('BF16', () => {
  const cases: [string, number, number][] = [
    ['exact 1.0', 0x3f800000, 0x3f80],
    ['tie, even below: stays', 0x3f808000, 0x3f80],
    ['tie, odd below: rounds up', 0x3f818000, 0x3f82],
    ['just above the tie', 0x3f808001, 0x3f81],
    ['just below the tie', 0x3f807fff, 0x3f80],
    ['negative tie, odd below', 0xbf818000, 0xbf82],
    ['max float overflows to infinity', 0x7f7fffff, 0x7f80],
    ['largest that stays finite', 0x7f7f7fff, 0x7f7f],
    ['infinity', 0x7f800000, 0x7f80],
    ['-infinity', 0xff800000, 0xff80],
    ['-0', 0x80000000, 0x8000],
    ['subnormal tie, even below', 0x00008000, 0x0000],
    ['subnormal tie, odd below', 0x00018000, 0x0002],
    ['quiet NaN', 0x7fc00000, 0x7fc0],
    ['negative quiet NaN', 0xffc00000, 0xffc0],
  ]

  const hex = (x: number, width: number): string => `0x${x.toString(16).padStart(width, '0')}`

  it.each(cases.map(([label, f, b]) => [label, hex(f, 8), hex(b, 4), f, b] as const))('%s: %s -> %s', (_label, _f, _b, f32, bf16) => {
    expect(u16(encodeFromFloat32('BF16', f32FromBits([f32])))[0]).toBe(bf16)
  })

  it('keeps a NaN whose payload is only in the low bits a NaN', () => {
    for (const bits of [0x7f800001, 0xff800001, 0x7f80ffff, 0x7fffffff]) {
      const h = u16(encodeFromFloat32('BF16', f32FromBits([bits])))[0]
      expect((h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0).toBe(true)
      expect(h >> 15).toBe(bits >>> 31)
    }
  })

  it('decodes as u16 << 16', () => {
    const got = decodeToFloat32('BF16', new Uint8Array(new Uint16Array([0x3f80, 0xc049, 0x0001, 0x7f80, 0x7fc0]).buffer))
    expect(Array.from(bitsOf(got))).toEqual([0x3f800000, 0xc0490000, 0x00010000, 0x7f800000, 0x7fc00000])
  })
})

describe('integer and other dtypes', () => {
  function rawBytes(ctor: { from(xs: number[]): ArrayBufferView }, values: number[]): Uint8Array {
    const v = ctor.from(values)
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength)
  }

  it('loads I64 (range-checked), I16, U16, I8, U8, U32, BOOL as Int32Array and F64 as Float32Array', () => {
    const i64 = new Uint8Array(BigInt64Array.from([-3n, 2147483647n, -2147483648n, 7n]).buffer)
    const file = join(tmp, 'ints.safetensors')
    saveSafetensors(file, {
      i64: { dtype: 'I64', shape: [4], data: i64 },
      i16: { dtype: 'I16', shape: [3], data: rawBytes(Int16Array, [-32768, 5, 32767]) },
      u16: { dtype: 'U16', shape: [2], data: rawBytes(Uint16Array, [65535, 1]) },
      i8: { dtype: 'I8', shape: [2], data: rawBytes(Int8Array, [-128, 127]) },
      u8: { dtype: 'U8', shape: [2], data: rawBytes(Uint8Array, [255, 0]) },
      u32: { dtype: 'U32', shape: [1], data: rawBytes(Uint32Array, [2147483647]) },
      mask: { dtype: 'BOOL', shape: [3], data: rawBytes(Uint8Array, [1, 0, 2]) },
      f64: { dtype: 'F64', shape: [2], data: rawBytes(Float64Array, [0.1, -1e300]) },
      ids: { dtype: 'I64', shape: [2], data: new Int32Array([-1, 99]) },
    })
    const { tensors } = loadSafetensors(file)
    const values = (n: string): number[] => Array.from(tensors.get(n)!.data)
    expect(tensors.get('i64')!.data).toBeInstanceOf(Int32Array)
    expect(values('i64')).toEqual([-3, 2147483647, -2147483648, 7])
    expect(values('i16')).toEqual([-32768, 5, 32767])
    expect(values('u16')).toEqual([65535, 1])
    expect(values('i8')).toEqual([-128, 127])
    expect(values('u8')).toEqual([255, 0])
    expect(values('u32')).toEqual([2147483647])
    expect(values('mask')).toEqual([1, 0, 1])
    expect(tensors.get('f64')!.data).toBeInstanceOf(Float32Array)
    expect(values('f64')).toEqual([Math.fround(0.1), -Infinity])
    expect(values('ids')).toEqual([-1, 99])
    const h = readHeader(file)
    expect(Array.from(new BigInt64Array(readTensorBytes(h, 'ids').slice().buffer))).toEqual([-1n, 99n])
    expect(Array.from(decodeToFloat32('I64', i64))).toEqual([-3, 2147483648, -2147483648, 7])
  })

  it('refuses I64 values outside int32, naming the file and tensor', () => {
    const big = new Uint8Array(BigInt64Array.from([1n, 2n ** 40n]).buffer)
    const file = join(tmp, 'big-ids.safetensors')
    saveSafetensors(file, { 'big.ids': { dtype: 'I64', shape: [2], data: big } })
    const e = catchError(() => loadSafetensors(file))
    expect(e.message).toContain('big-ids.safetensors')
    expect(e.message).toContain('"big.ids"')
    expect(e.message).toMatch(/1099511627776 .*int32/)
    expect(e.tensor).toBe('big.ids')
    expect(() => decodeToInt32('U32', rawBytes(Uint32Array, [2 ** 31]))).toThrow(RangeError)
  })
})

// ---------------------------------------------------------------------------------------------

describe('corrupt files', () => {
  const f32Bytes = (n: number): Uint8Array => new Uint8Array(new Float32Array(n).fill(1).buffer)
  const entry = (dtype: unknown, shape: unknown, offsets: unknown): unknown => ({ dtype, shape, data_offsets: offsets })
  const header = (obj: unknown): string => JSON.stringify(obj)

  interface Case {
    label: string
    make: (name: string) => string
    tensor?: string
    word: RegExp
  }
  const cases: Case[] = [
    {
      label: 'truncated data',
      make: (name) => {
        const file = join(tmp, name)
        saveSafetensors(file, {
          a: { dtype: 'F32', shape: [4], data: new Float32Array(4) },
          'b.weight': { dtype: 'F32', shape: [2, 3], data: new Float32Array(6) },
        })
        truncateSync(file, readFileSync(file).length - 4)
        return file
      },
      tensor: 'b.weight',
      word: /beyond the data section.*truncated/,
    },
    {
      label: 'a header that lies about the byte length',
      make: (name) => writeRaw(name, header({ 'x.weight': entry('F32', [5, 6], [0, 100]) }), f32Bytes(25)),
      tensor: 'x.weight',
      word: /data_offsets \[0, 100\] hold 100 bytes but F32 \[5, 6\] needs 120/,
    },
    {
      label: 'overlapping offsets',
      make: (name) => writeRaw(name, header({ first: entry('F32', [4], [0, 16]), second: entry('F32', [4], [8, 24]) }), f32Bytes(6)),
      tensor: 'second',
      word: /overlap tensor "first"/,
    },
    {
      label: 'a header length larger than the file',
      make: (name) => writeRaw(name, header({ a: entry('F32', [1], [0, 4]) }), f32Bytes(1), 1000n),
      word: /header length 1000 is larger than the file/,
    },
    {
      label: 'an absurd header length',
      make: (name) => writeRaw(name, '{}', new Uint8Array(0), 2n ** 40n),
      word: /absurd/,
    },
    {
      label: 'a file shorter than 8 bytes',
      make: (name) => {
        const file = join(tmp, name)
        writeFileSync(file, Buffer.from([1, 2, 3, 4, 5]))
        return file
      },
      word: /5 bytes, too short/,
    },
    {
      label: 'a non-JSON header',
      make: (name) => writeRaw(name, '{"a": {"dtype": "F32", ', new Uint8Array(0)),
      word: /not valid JSON/,
    },
    {
      label: 'a header that is not UTF-8',
      make: (name) => writeRaw(name, new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]), new Uint8Array(0)),
      word: /not valid UTF-8/,
    },
    {
      label: 'a header that is a JSON array',
      make: (name) => writeRaw(name, '[1, 2]', new Uint8Array(0)),
      word: /not a JSON object/,
    },
    {
      label: 'an unknown dtype',
      make: (name) => writeRaw(name, header({ 'odd.weight': entry('F12', [1], [0, 4]) }), f32Bytes(1)),
      tensor: 'odd.weight',
      word: /unknown dtype "F12"/,
    },
    {
      label: 'a dtype that is not a string',
      make: (name) => writeRaw(name, header({ w: entry(5, [1], [0, 4]) }), f32Bytes(1)),
      tensor: 'w',
      word: /"dtype" must be a string/,
    },
    {
      label: 'an entry without data_offsets',
      make: (name) => writeRaw(name, header({ w: { dtype: 'F32', shape: [1] } }), f32Bytes(1)),
      tensor: 'w',
      word: /no "data_offsets"/,
    },
    {
      label: 'an entry that is not an object',
      make: (name) => writeRaw(name, header({ w: 3 }), f32Bytes(1)),
      tensor: 'w',
      word: /must be an object/,
    },
    {
      label: 'a negative dimension',
      make: (name) => writeRaw(name, header({ w: entry('F32', [2, -1], [0, 4]) }), f32Bytes(1)),
      tensor: 'w',
      word: /dimension -1 is not a non-negative integer/,
    },
    {
      label: 'a fractional dimension',
      make: (name) => writeRaw(name, header({ w: entry('F32', [1.5], [0, 4]) }), f32Bytes(1)),
      tensor: 'w',
      word: /dimension 1.5/,
    },
    {
      label: 'non-integer offsets',
      make: (name) => writeRaw(name, header({ w: entry('F32', [1], [0, 4.5]) }), f32Bytes(2)),
      tensor: 'w',
      word: /"data_offsets" must be two non-negative integers/,
    },
    {
      label: 'offsets with begin after end',
      make: (name) => writeRaw(name, header({ w: entry('F32', [1], [8, 4]) }), f32Bytes(2)),
      tensor: 'w',
      word: /begin is after end/,
    },
    {
      label: 'a metadata value that is not a string',
      make: (name) => writeRaw(name, header({ __metadata__: { epoch: 3 }, w: entry('F32', [1], [0, 4]) }), f32Bytes(1)),
      word: /"__metadata__" value for "epoch" must be a string/,
    },
  ]

  it.each(cases)('$label gives a SafetensorsError naming file, tensor and problem', ({ label, make, tensor, word }) => {
    const name = `${label.replace(/\W+/g, '-')}.safetensors`
    const file = make(name)
    const e = catchError(() => readHeader(file))
    expect(e.file).toBe(file)
    expect(e.message.startsWith(`${file}: `)).toBe(true)
    expect(e.message).toContain(name)
    expect(e.tensor).toBe(tensor)
    if (tensor !== undefined) expect(e.message).toContain(`tensor "${tensor}"`)
    expect(e.message).toMatch(word)
    // loadSafetensors goes through the same validation.
    expect(() => loadSafetensors(file)).toThrow(SafetensorsError)
  })

  it('accepts holes between tensors and empty tensors', () => {
    const data = new Uint8Array(new Float32Array([1, 2, 3, 4, 99, 99, 5, 6]).buffer)
    const file = writeRaw(
      'holes.safetensors',
      header({ a: entry('F32', [4], [0, 16]), e: entry('F32', [0, 3], [16, 16]), b: entry('F32', [2], [24, 32]) }),
      data,
    )
    const { tensors } = loadSafetensors(file)
    expect(Array.from(tensors.get('a')!.data)).toEqual([1, 2, 3, 4])
    expect(Array.from(tensors.get('b')!.data)).toEqual([5, 6])
    expect(tensors.get('e')).toMatchObject({ shape: [0, 3] })
    expect(tensors.get('e')!.data.length).toBe(0)
  })

  it('reports a file truncated after its header was read, and an unknown tensor name', () => {
    const file = join(tmp, 'shrinks.safetensors')
    saveSafetensors(file, {
      a: { dtype: 'F32', shape: [8], data: new Float32Array(8) },
      z: { dtype: 'F32', shape: [8], data: new Float32Array(8) },
    })
    const h = readHeader(file)
    truncateSync(file, h.dataStart + 40)
    expect(readTensor(h, 'a').data.length).toBe(8)
    const e = catchError(() => readTensor(h, 'z'))
    expect(e.message).toMatch(/shrinks\.safetensors: tensor "z": file is truncated/)
    const missing = catchError(() => readTensor(h, 'nope'))
    expect(missing.message).toContain('tensor "nope": no such tensor')
    const noFile = catchError(() => readHeader(join(tmp, 'absent.safetensors')))
    expect(noFile.message).toMatch(/absent\.safetensors: cannot open/)
  })
})

// ---------------------------------------------------------------------------------------------

describe('saveSafetensors', () => {
  it('writes sorted, contiguous tensors behind a space-padded, 8-aligned header', () => {
    const file = join(tmp, 'layout.safetensors')
    saveSafetensors(
      file,
      new Map<string, TensorToWrite>([
        ['z', { dtype: 'F16', shape: [3], data: new Float32Array([1, 2, 3]) }],
        ['a', { dtype: 'I32', shape: [1, 2], data: new Int32Array([-7, 8]) }],
        ['m', { dtype: 'U8', shape: [5], data: new Uint8Array([1, 2, 3, 4, 5]) }],
      ]),
      { note: 'hi' },
    )
    const raw = readFileSync(file)
    const n = Number(raw.readBigUInt64LE(0))
    expect(n % 8).toBe(0)
    const text = raw.subarray(8, 8 + n).toString('utf8')
    expect(text.trimEnd()).toBe(
      '{"__metadata__":{"note":"hi"},"a":{"dtype":"I32","shape":[1,2],"data_offsets":[0,8]},' +
        '"m":{"dtype":"U8","shape":[5],"data_offsets":[8,13]},"z":{"dtype":"F16","shape":[3],"data_offsets":[13,19]}}',
    )
    expect(/^ *$/.test(text.slice(text.trimEnd().length))).toBe(true)
    expect(raw.length).toBe(8 + n + 19)
    const { tensors, metadata } = loadSafetensors(file)
    expect(metadata).toEqual({ note: 'hi' })
    expect(Array.from(tensors.get('a')!.data)).toEqual([-7, 8])
    expect(Array.from(tensors.get('m')!.data)).toEqual([1, 2, 3, 4, 5])
    expect(Array.from(tensors.get('z')!.data)).toEqual([1, 2, 3])
    expect(tempLeftovers(tmp)).toEqual([])
  })

  it('refuses data that does not match dtype and shape, naming the tensor', () => {
    const file = join(tmp, 'bad-write.safetensors')
    const bad: [TensorToWrite, RegExp][] = [
      [{ dtype: 'F32', shape: [3], data: new Float32Array(2) }, /2 values but F32 \[3\] needs 3/],
      [{ dtype: 'I32', shape: [2], data: new Float32Array(2) }, /Float32Array data can be written as F32, F16 or BF16, not I32/],
      [{ dtype: 'F16', shape: [2], data: new Uint8Array(3) }, /3 raw bytes but F16 \[2\] needs 4/],
      [{ dtype: 'F32', shape: [-1], data: new Float32Array(0) }, /shape/],
      [{ dtype: 'Q4' as DType, shape: [1], data: new Uint8Array(1) }, /unknown dtype "Q4"/],
    ]
    for (const [t, word] of bad) {
      const e = catchError(() => saveSafetensors(file, { 'w.bad': t }))
      expect(e.message).toContain('bad-write.safetensors: tensor "w.bad"')
      expect(e.message).toMatch(word)
    }
    expect(existsSync(file)).toBe(false)
  })

  it('leaves no temporary file behind, and a failed write leaves the existing file untouched', () => {
    const dir = freshDir('atomic')
    const file = join(dir, 'model.safetensors')
    saveSafetensors(file, { w: { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) } })
    expect(readdirSync(dir)).toEqual(['model.safetensors'])
    const before = readFileSync(file)

    // Invalid data: refused before anything is written.
    catchError(() => saveSafetensors(file, { w: { dtype: 'F32', shape: [3], data: new Float32Array([1, 2]) } }))
    expect(readFileSync(file).equals(before)).toBe(true)
    expect(readdirSync(dir)).toEqual(['model.safetensors'])

    // Missing directory: nothing is created.
    const missing = join(dir, 'no-such-dir', 'out.safetensors')
    const e = catchError(() => saveSafetensors(missing, { w: { dtype: 'F32', shape: [1], data: new Float32Array(1) } }))
    expect(e.message).toContain('out.safetensors')
    expect(e.message).toMatch(/cannot write/)
    expect(existsSync(join(dir, 'no-such-dir'))).toBe(false)

    // The rename fails (the target is a non-empty directory): the written temporary is removed.
    const blocked = join(dir, 'blocked.safetensors')
    mkdirSync(blocked)
    writeFileSync(join(blocked, 'keep'), 'x')
    const r = catchError(() => saveSafetensors(blocked, { w: { dtype: 'F32', shape: [1], data: new Float32Array(1) } }))
    expect(r.message).toMatch(/blocked\.safetensors: cannot replace/)
    expect(readdirSync(blocked)).toEqual(['keep'])
    expect(tempLeftovers(dir)).toEqual([])

    // A successful overwrite replaces the content.
    saveSafetensors(file, { w: { dtype: 'F32', shape: [2], data: new Float32Array([3, 4]) } })
    expect(Array.from(loadSafetensors(file).tensors.get('w')!.data)).toEqual([3, 4])
    expect(tempLeftovers(dir)).toEqual([])
  })
})

// ---------------------------------------------------------------------------------------------

describe('checkpoint folders', () => {
  function sampleTensors(): Map<string, TensorToWrite> {
    const t = new Map<string, TensorToWrite>()
    const ramp = (n: number, k: number): Float32Array =>
      Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + k) * 10 ** ((i % 7) - 3))
    for (let layer = 0; layer < 3; layer++) {
      t.set(`model.layers.${layer}.mlp.gate.weight`, { dtype: 'F32', shape: [4, 16], data: ramp(64, layer) })
      t.set(`model.layers.${layer}.mlp.experts.0.w1.weight`, {
        dtype: 'BF16',
        shape: [16, 8],
        data: ramp(128, layer + 10),
      })
      t.set(`model.layers.${layer}.mlp.experts.1.w1.weight`, {
        dtype: 'F16',
        shape: [16, 8],
        data: ramp(128, layer + 20),
      })
    }
    t.set('model.embed_tokens.weight', { dtype: 'F32', shape: [32, 20], data: ramp(640, 99) }) // 2560 bytes: larger than a shard
    t.set('model.norm.weight', {
      dtype: 'F32',
      shape: [4],
      data: f32FromBits([0x7fc00001, 0x80000000, 0x7f800000, 0x00000001]),
    })
    t.set('step', { dtype: 'I32', shape: [1], data: new Int32Array([-123456]) })
    t.set('mask', { dtype: 'BOOL', shape: [3], data: new Uint8Array([1, 0, 1]) })
    return t
  }

  function expectSameAsWritten(written: Map<string, TensorToWrite>, dir: string): void {
    const { index, headers } = openCheckpointTensors(dir)
    expect([...index.keys()].sort()).toEqual([...written.keys()].sort())
    expect(new Set(index.values()).size).toBe(headers.length)
    for (const [name, t] of written) {
      const h = index.get(name)!
      const got = readTensor(h, name)
      expect(got.dtype).toBe(t.dtype)
      expect(got.shape).toEqual(t.shape)
      const bytes = readTensorBytes(h, name)
      if (t.data instanceof Float32Array) {
        const encoded = encodeFromFloat32(t.dtype as 'F32' | 'F16' | 'BF16', t.data)
        expect(Buffer.from(bytes).equals(Buffer.from(encoded))).toBe(true)
        if (t.dtype === 'F32') expect(Array.from(bitsOf(got.data as Float32Array))).toEqual(Array.from(bitsOf(t.data)))
      } else if (t.data instanceof Int32Array) {
        expect(Array.from(got.data)).toEqual(Array.from(t.data))
      } else {
        expect(Array.from(bytes)).toEqual(Array.from(t.data))
      }
    }
  }

  it('shards by maxShardBytes, writes a Hugging Face index, and reads every tensor back bit-exactly', () => {
    const dir = freshDir('sharded')
    const tensors = sampleTensors()
    const names = saveCheckpointTensors(dir, tensors, { maxShardBytes: 1024, metadata: { run: 'r1' } })
    const shards = names.filter((n) => n !== 'model.safetensors.index.json')
    expect(names[names.length - 1]).toBe('model.safetensors.index.json')
    expect(shards.length).toBeGreaterThan(3)
    shards.forEach((s, i) =>
      expect(s).toBe(`model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`),
    )
    expect(readdirSync(dir).sort()).toEqual([...names].sort())

    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8')) as {
      metadata: { total_size: number }
      weight_map: Record<string, string>
    }
    const totalBytes = [...tensors.values()].reduce((s, t) => s + numel(t.shape) * DTYPE_SIZES[t.dtype], 0)
    expect(index.metadata.total_size).toBe(totalBytes)
    expect(Object.keys(index.weight_map)).toEqual([...tensors.keys()].sort())
    for (const shard of shards) {
      const h = readHeader(join(dir, shard))
      expect(h.metadata).toEqual({ format: 'pt', run: 'r1' })
      const bytes = [...h.tensors.values()].reduce((s, t) => s + t.end - t.begin, 0)
      expect(bytes <= 1024 || h.tensors.size === 1).toBe(true)
      for (const name of h.tensors.keys()) expect(index.weight_map[name]).toBe(shard)
    }
    expect(readHeader(join(dir, index.weight_map['model.embed_tokens.weight'])).tensors.size).toBe(1)
    expectSameAsWritten(tensors, dir)
    expect(tempLeftovers(dir)).toEqual([])
  })

  it('switches between single-file and sharded saves, removing only stale checkpoint files', () => {
    const dir = freshDir('switch')
    writeFileSync(join(dir, 'model-bf16.safetensors'), 'not ours')
    writeFileSync(join(dir, 'config.json'), '{}')
    const tensors = sampleTensors()
    const sharded = saveCheckpointTensors(dir, tensors, { maxShardBytes: 700 })
    expect(sharded.length).toBeGreaterThan(4)

    expect(saveCheckpointTensors(dir, tensors)).toEqual(['model.safetensors'])
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'model-bf16.safetensors', 'model.safetensors'])
    expect(readHeader(join(dir, 'model.safetensors')).metadata).toEqual({ format: 'pt' })
    expectSameAsWritten(tensors, dir)

    const fewer = saveCheckpointTensors(dir, tensors, { maxShardBytes: 3000 })
    expect(fewer.length).toBeLessThan(sharded.length)
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'model-bf16.safetensors', ...fewer].sort())
    expectSameAsWritten(tensors, dir)
    expect(tempLeftovers(dir)).toEqual([])
  })

  describe('writeCheckpointStream', () => {
    /** The sample tensors as byte sources, counting how many are held at once. */
    function sources(tensors: Map<string, TensorToWrite>, live = { now: 0, max: 0 }) {
      return [...tensors].map(([name, t]) => ({
        name,
        dtype: t.dtype,
        shape: t.shape,
        bytes: async () => {
          live.now++
          live.max = Math.max(live.max, live.now)
          await new Promise((r) => setImmediate(r))
          live.now--
          if (t.data instanceof Float32Array) return encodeFromFloat32(t.dtype as 'F32' | 'F16' | 'BF16', t.data)
          if (t.data instanceof Int32Array) {
            const dir = freshDir(`enc-${Math.random().toString(16).slice(2)}`)
            saveSafetensors(join(dir, 'x.safetensors'), { x: t })
            return readTensorBytes(readHeader(join(dir, 'x.safetensors')), 'x')
          }
          return t.data
        },
      }))
    }

    it('writes the same files as saveCheckpointTensors, one tensor at a time', async () => {
      const tensors = sampleTensors()
      for (const max of [1024, 700, undefined]) {
        const a = freshDir(`stream-ref-${max}`)
        const b = freshDir(`stream-${max}`)
        const names = saveCheckpointTensors(a, tensors, { maxShardBytes: max, metadata: { run: 'r1' } })
        const live = { now: 0, max: 0 }
        const progress: number[] = []
        const streamed = await writeCheckpointStream(b, sources(tensors, live), {
          maxShardBytes: max,
          metadata: { run: 'r1' },
          onTensor: (done) => void progress.push(done),
        })
        expect(streamed).toEqual(names)
        for (const f of names) expect(readFileSync(join(b, f)).equals(readFileSync(join(a, f))), f).toBe(true)
        expect(live.max).toBe(1)
        expect(progress).toHaveLength(tensors.size)
        expect(progress.at(-1)).toBe([...tensors.values()].reduce((s, t) => s + numel(t.shape) * DTYPE_SIZES[t.dtype], 0))
        expect(tempLeftovers(b)).toEqual([])
      }
    })

    it('refuses a source of the wrong length and leaves nothing behind, as after a cancel', async () => {
      const tensors = sampleTensors()
      const dir = freshDir('stream-bad')
      const bad = sources(tensors)
      bad[2] = { ...bad[2], bytes: async () => new Uint8Array(3) }
      await expect(writeCheckpointStream(dir, bad, { maxShardBytes: 1024 })).rejects.toThrow(
        new RegExp(`tensor "${bad[2].name}": 3 bytes given but`),
      )
      expect(readdirSync(dir)).toEqual([])
      const cancelled = writeCheckpointStream(dir, sources(tensors), {
        maxShardBytes: 1024,
        onTensor: (done) => {
          if (done > 2000) throw new Error('cancelled')
        },
      })
      await expect(cancelled).rejects.toThrow('cancelled')
      expect(readdirSync(dir)).toEqual([])
    })
  })

  describe('broken indexes', () => {
    let dir = ''
    let indexText = ''
    beforeAll(() => {
      dir = freshDir('broken-source')
      saveCheckpointTensors(dir, sampleTensors(), { maxShardBytes: 1024 })
      indexText = readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8')
    })

    function brokenCopy(name: string, edit: (weightMap: Record<string, string>) => void): string {
      const copy = freshDir(name)
      for (const f of readdirSync(dir)) writeFileSync(join(copy, f), readFileSync(join(dir, f)))
      const index = JSON.parse(indexText) as { weight_map: Record<string, string> }
      edit(index.weight_map)
      writeFileSync(join(copy, 'model.safetensors.index.json'), JSON.stringify(index))
      return copy
    }

    it('names a tensor the index puts in a shard that lacks it', () => {
      let shard = ''
      const copy = brokenCopy('missing-tensor', (m) => {
        shard = m['step']
        m['ghost.weight'] = shard
      })
      const e = catchError(() => openCheckpointTensors(copy))
      expect(e.file).toBe(join(copy, 'model.safetensors.index.json'))
      expect(e.message).toContain('tensor "ghost.weight"')
      expect(e.message).toContain(`"${shard}", but that shard does not hold it (missing tensor)`)
    })

    it('names a tensor the index puts in the wrong shard', () => {
      let right = ''
      let wrong = ''
      const copy = brokenCopy('wrong-shard', (m) => {
        right = m['step']
        wrong = Object.values(m).find((s) => s !== right)!
        m['step'] = wrong
      })
      const e = catchError(() => openCheckpointTensors(copy))
      expect(e.file).toBe(join(copy, 'model.safetensors.index.json'))
      expect(e.tensor).toBe('step')
      expect(e.message).toContain(`"${wrong}", but that shard does not hold it`)
    })

    it('names a shard that does not exist', () => {
      const copy = brokenCopy('missing-shard', (m) => {
        m['model.norm.weight'] = 'model-00009-of-00009.safetensors'
      })
      const e = catchError(() => openCheckpointTensors(copy))
      expect(e.message).toContain('model.safetensors.index.json')
      expect(e.message).toMatch(/shard "model-00009-of-00009\.safetensors", which does not exist/)
      expect(e.tensor).toBe('model.norm.weight')
    })

    it('refuses a tensor stored in two shards', () => {
      const copy = brokenCopy('duplicate', () => undefined)
      const index = JSON.parse(indexText) as { weight_map: Record<string, string> }
      const victim = index.weight_map['step']
      const other = Object.values(index.weight_map).find((s) => s !== victim)!
      const h = readHeader(join(copy, other))
      const extra = new Map<string, TensorToWrite>(
        [...h.tensors.values()].map((t) => [t.name, { dtype: t.dtype, shape: t.shape, data: readTensorBytes(h, t.name) }]),
      )
      extra.set('step', { dtype: 'I32', shape: [1], data: new Int32Array([1]) })
      saveSafetensors(join(copy, other), extra, { format: 'pt' })
      const e = catchError(() => openCheckpointTensors(copy))
      expect(e.message).toContain('tensor "step"')
      expect(e.message).toMatch(/also in .*one file only/)
      expect(e.message).toContain(victim)
      expect(e.message).toContain(other)
    })

    it('refuses shard names outside the folder', () => {
      const copy = brokenCopy('traversal', (m) => {
        m['model.norm.weight'] = '../sharded/model-00001-of-00002.safetensors'
      })
      const e = catchError(() => openCheckpointTensors(copy))
      expect(e.message).toMatch(/tensor "model\.norm\.weight": weight_map names .* not a file name in this folder/)
    })

    it('says what is missing in an empty folder', () => {
      const empty = freshDir('empty')
      const e = catchError(() => openCheckpointTensors(empty))
      expect(e.message).toBe(`${empty}: no model.safetensors or model.safetensors.index.json in this folder`)
      expect(hasCheckpointFiles(empty)).toBe(false)
      // A Trainer's own files are no model's weights: still nothing to say.
      // Nor are files that only start like weights (a download cut short).
      for (const f of [
        'training_args.bin',
        'optimizer.pt',
        'rng_state.pth',
        'config.json',
        'model.bin.incomplete',
        'm.gguf.part',
        'x.safetensors.tmp',
      ])
        writeFileSync(join(empty, f), 'x')
      expect(otherWeightsNote(empty)).toBe('')
    })

    it('says what a folder holds instead of a checkpoint, and what to do', () => {
      const holding = (files: string[]): string => {
        const dir = freshDir(`other-${files[0]}`)
        for (const f of files) writeFileSync(join(dir, f), 'x')
        return catchError(() => openCheckpointTensors(dir)).message
      }
      const pickle = holding(['pytorch_model-00002-of-00002.bin', 'pytorch_model-00001-of-00002.bin', 'training_args.bin'])
      expect(pickle).toMatch(
        /in this folder; it has pytorch_model-00001-of-00002\.bin and 1 more: PyTorch's pickle format, which is not read/,
      )
      expect(pickle).toMatch(
        /AutoModelForCausalLM\.from_pretrained\("(.*other-pytorch_model-00002-of-00002\.bin)", torch_dtype="auto"\)\.save_pretrained\("\1-safetensors", safe_serialization=True\), then use that folder$/,
      )
      expect(holding(['model.bin'])).toMatch(/it has model\.bin: PyTorch's pickle format/)
      expect(holding(['mixtral-8x7b.Q4_K_M.gguf'])).toMatch(
        /it has mixtral-8x7b\.Q4_K_M\.gguf: llama\.cpp's GGUF format: use the model's Hugging Face version/,
      )
      expect(holding(['consolidated.safetensors'])).toMatch(
        /it has consolidated\.safetensors: safetensors under names Hugging Face transformers does not load/,
      )
      expect(holding(['adapter_model.safetensors', 'adapter_config.json'])).toMatch(
        /it is a PEFT \(LoRA\) adapter \(adapter_config\.json\), not a model: give its base model's folder, or bring the adapter in as a run with: moe-workbench adapter import "/,
      )
      expect(otherWeightsNote(join(tmp, 'no-such-folder'))).toBe('')
      expect(holding(['config.json', 'tokenizer.json'])).toMatch(
        /in this folder; it has the model's config\.json and no weights: add its \.safetensors files \(moe-workbench info --model ".*" tells from the config alone whether it fits\)$/,
      )
      const single = freshDir('has-single')
      writeFileSync(join(single, 'model.safetensors.index.json'), '{}')
      expect(hasCheckpointFiles(single)).toBe(true)
    })
  })
})

// ---------------------------------------------------------------------------------------------
// Paths a mutation run found no test for: FP8 checkpoints, unaligned reads, byte ranges, the
// writer's and the index's refusals, shard boundaries.

describe('FP8 checkpoints (DeepSeek/Qwen3 FP8 releases)', () => {
  it('F8_E4M3 (the "fn" variant: no infinities, one NaN per sign) decodes known bytes exactly', () => {
    const bytes = new Uint8Array([0x00, 0x80, 0x01, 0x07, 0x08, 0x38, 0xc0, 0x7e, 0xfe, 0x7f, 0xff, 0x78])
    const got = decodeToFloat32('F8_E4M3', bytes)
    expect(Array.from(got.slice(0, 9))).toEqual([0, -0, 2 ** -9, 7 * 2 ** -9, 2 ** -6, 1, -2, 448, -448])
    expect(Object.is(got[1], -0)).toBe(true)
    expect(Number.isNaN(got[9]) && Number.isNaN(got[10])).toBe(true)
    // exponent 15 with a mantissa below 7 is a number (256), not NaN or infinity
    expect(got[11]).toBe(256)
    // the table is built once and reused: a second decode gives the same values
    expect(Array.from(decodeToFloat32('F8_E4M3', bytes.slice(0, 9)))).toEqual(Array.from(got.slice(0, 9)))
  })

  it('F8_E5M2 is the top byte of a half float: infinities, NaN and subnormals included', () => {
    const got = decodeToFloat32('F8_E5M2', new Uint8Array([0x3c, 0xc0, 0x7c, 0xfc, 0x01, 0x7e, 0x00]))
    expect(Array.from(got.slice(0, 5))).toEqual([1, -2, Infinity, -Infinity, 2 ** -16])
    expect(Number.isNaN(got[5])).toBe(true)
    expect(got[6]).toBe(0)
  })

  it('an FP8 tensor in a file loads as float32', () => {
    const file = writeRaw(
      'fp8.safetensors',
      JSON.stringify({ w: { dtype: 'F8_E4M3', shape: [2, 2], data_offsets: [0, 4] } }),
      new Uint8Array([0x38, 0xc0, 0x00, 0x7e]),
    )
    const t = loadSafetensors(file).tensors.get('w')!
    expect(t.shape).toEqual([2, 2])
    expect(Array.from(t.data)).toEqual([1, -2, 0, 448])
  })
})

describe('byte alignment and views', () => {
  const bf16 = (values: number[]): Uint8Array => {
    const out = new Uint8Array(values.length * 2)
    const bits = new Uint32Array(new Float32Array(values).buffer)
    for (let i = 0; i < values.length; i++) {
      out[2 * i] = (bits[i] >>> 16) & 0xff
      out[2 * i + 1] = bits[i] >>> 24
    }
    return out
  }

  it('BF16 decodes the same at any alignment and any count (pairs, then the odd one)', () => {
    const values = [1, -2, 0.5, 3, -0.25]
    for (const count of [1, 2, 3, 5])
      for (const shift of [0, 2, 4, 6]) {
        const buf = new Uint8Array(16 + count * 2)
        buf.set(bf16(values.slice(0, count)), shift)
        expect(Array.from(decodeToFloat32('BF16', buf.subarray(shift, shift + count * 2))), `${count} values at +${shift}`).toEqual(
          values.slice(0, count),
        )
      }
  })

  it('aligned F32 and I32 bytes are viewed, not copied; unaligned ones are copied and read right', () => {
    const buf = new Uint8Array(40)
    new Float32Array(buf.buffer, 4, 2).set([1.5, -3])
    const view = decodeToFloat32('F32', buf.subarray(4, 12))
    expect(Array.from(view)).toEqual([1.5, -3])
    expect(view.buffer).toBe(buf.buffer)
    expect(view.byteOffset).toBe(4)
    const ints = new Uint8Array(40)
    new Int32Array(ints.buffer, 8, 2).set([-5, 70000])
    const iview = decodeToInt32('I32', ints.subarray(8, 16))
    expect(Array.from(iview)).toEqual([-5, 70000])
    expect(iview.buffer).toBe(ints.buffer)
    const odd = new Uint8Array(12)
    odd.set(new Uint8Array(new Float32Array([2.5, 7]).buffer), 1)
    const copy = decodeToFloat32('F32', odd.subarray(1, 9))
    expect(Array.from(copy)).toEqual([2.5, 7])
    expect(copy.buffer).not.toBe(odd.buffer)
  })

  it('I32 and U64 decode to float32 too; decodeToInt32 refuses float dtypes and U32 values past int32', () => {
    expect(Array.from(decodeToFloat32('I32', new Uint8Array(new Int32Array([-5, 7]).buffer)))).toEqual([-5, 7])
    expect(Array.from(decodeToFloat32('U64', new Uint8Array(new BigUint64Array([3n, 2n ** 40n]).buffer)))).toEqual([3, 2 ** 40])
    expect(() => decodeToInt32('F32', new Uint8Array(4))).toThrow(new TypeError('F32 is a float dtype, not an integer one'))
    expect(Array.from(decodeToInt32('U32', new Uint8Array(new Uint32Array([2 ** 31 - 1]).buffer)))).toEqual([2 ** 31 - 1])
    expect(() => decodeToInt32('U32', new Uint8Array(new Uint32Array([1, 2 ** 31]).buffer))).toThrow(RangeError)
    expect(() => decodeToFloat32('BF16', new Uint8Array(3))).toThrow('3 bytes is not a whole number of BF16 elements (2 bytes each)')
  })

  it('encodeFromFloat32 copies exactly the view it is given, and refuses other dtypes', () => {
    const all = new Float32Array([9, 1.25, -2, 9])
    const f32 = encodeFromFloat32('F32', all.subarray(1, 3))
    expect(Array.from(new Float32Array(f32.buffer, f32.byteOffset, 2))).toEqual([1.25, -2])
    expect(f32.length).toBe(8)
    f32[0] ^= 0xff
    expect(all[1]).toBe(1.25)
    expect(() => encodeFromFloat32('F64' as 'F32', all)).toThrow(TypeError)
  })
})

describe('readTensorRange', () => {
  it('reads a byte range inside one tensor and refuses a range outside it, naming both', async () => {
    const { readTensorRange } = await import('../../../src/main/engine/safetensors')
    const file = join(tmp, 'range.safetensors')
    saveSafetensors(file, {
      a: { dtype: 'F32', shape: [2], data: new Float32Array([7, 8]) },
      b: { dtype: 'F32', shape: [4], data: new Float32Array([1, 2, 3, 4]) },
    })
    const h = readHeader(file)
    const bytes = readTensorRange(h, 'b', 4, 8)
    expect(Array.from(new Float32Array(bytes.slice().buffer))).toEqual([2, 3])
    expect(readTensorRange(h, 'b', 16, 0).length).toBe(0)
    expect(Array.from(new Float32Array(readTensorRange(h, 'b', 0, 16).slice().buffer))).toEqual([1, 2, 3, 4])
    for (const [offset, length] of [
      [-4, 4],
      [0, -1],
      [12, 8],
      [0, 17],
    ])
      expect(catchError(() => readTensorRange(h, 'b', offset, length)).message).toContain(
        `tensor "b": bytes [${offset}, ${offset + length}) are outside the tensor's 16 bytes`,
      )
  })
})

describe('header refusals not in the table above', () => {
  const one = (entry: unknown, extra: Record<string, unknown> = {}): string =>
    writeRaw(`h-${Math.random().toString(36).slice(2)}.safetensors`, JSON.stringify({ ...extra, t: entry }), new Uint8Array(8))

  it('names each missing or malformed field of an entry', () => {
    expect(catchError(() => readHeader(one({ shape: [1], data_offsets: [0, 4] }))).message).toMatch(/tensor "t": entry has no "dtype"$/)
    expect(catchError(() => readHeader(one({ dtype: 'F32', data_offsets: [0, 4] }))).message).toMatch(/tensor "t": entry has no "shape"$/)
    expect(catchError(() => readHeader(one({ dtype: 'X9', shape: [1], data_offsets: [0, 4] }))).message).toContain(
      'unknown dtype "X9" (known: F64, F32, F16, BF16',
    )
    expect(catchError(() => readHeader(one({ dtype: 'F32', shape: 4, data_offsets: [0, 4] }))).message).toMatch(
      /"shape" must be an array, got 4$/,
    )
    for (const offsets of [[0], [0, 4, 8], 'x', [0, -4]])
      expect(catchError(() => readHeader(one({ dtype: 'F32', shape: [1], data_offsets: offsets }))).message).toContain(
        `"data_offsets" must be two non-negative integers [begin, end], got ${JSON.stringify(offsets)}`,
      )
  })

  it('metadata: absent or null is none; anything but an object of strings is refused', () => {
    const ok = { dtype: 'F32', shape: [1], data_offsets: [0, 4] }
    expect(readHeader(one(ok, { __metadata__: null })).metadata).toEqual({})
    expect(readHeader(one(ok)).metadata).toEqual({})
    expect(readHeader(one(ok, { __metadata__: { format: 'pt' } })).metadata).toEqual({ format: 'pt' })
    for (const bad of [['pt'], 'pt', 3])
      expect(catchError(() => readHeader(one(ok, { __metadata__: bad }))).message).toContain(
        `"__metadata__" must be an object of strings, got ${JSON.stringify(bad)}`,
      )
  })

  it('an 8-byte file is an empty header length, not "too short"; a header at the size limit is not "absurd"', () => {
    const eight = join(tmp, 'eight.safetensors')
    writeFileSync(eight, Buffer.alloc(8))
    expect(catchError(() => readHeader(eight)).message).not.toMatch(/too short/)
    const big = writeRaw('limit.safetensors', '{}', new Uint8Array(0), 100_000_000n)
    expect(catchError(() => readHeader(big)).message).toMatch(/header length 100000000 is larger than the file/)
    const over = writeRaw('over.safetensors', '{}', new Uint8Array(0), 100_000_001n)
    expect(catchError(() => readHeader(over)).message).toMatch(/header length 100000001 is absurd \(limit 100000000 bytes\)/)
  })

  it('long values in messages are cut to 80 characters', () => {
    const long = 'x'.repeat(200)
    const msg = catchError(() => readHeader(one({ dtype: 'F32', shape: [long], data_offsets: [0, 4] }))).message
    expect(msg).toContain(`shape ${JSON.stringify([long]).slice(0, 77)}...: dimension`)
    expect(msg).not.toContain('x'.repeat(100))
  })
})

describe('the writer refuses what it cannot write, naming the tensor', () => {
  const save = (tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>) => () =>
    saveSafetensors(join(tmp, 'refused.safetensors'), tensors, metadata)

  it('names, shapes, data kinds and lengths', () => {
    const f = new Float32Array(2)
    expect(catchError(save({ '': { dtype: 'F32', shape: [2], data: f } })).message).toContain('"" cannot be a tensor name')
    expect(catchError(save({ __metadata__: { dtype: 'F32', shape: [2], data: f } })).message).toContain(
      '"__metadata__" cannot be a tensor name',
    )
    expect(catchError(save({ s: { dtype: 'F32', shape: [2, 1.5], data: f } })).message).toContain(
      'tensor "s": shape [2,1.5] must be non-negative integers',
    )
    expect(catchError(save({ i: { dtype: 'F32', shape: [2], data: new Int32Array(2) } })).message).toContain(
      'tensor "i": Int32Array data can be written as I32 or I64, not F32',
    )
    expect(catchError(save({ i: { dtype: 'I32', shape: [3], data: new Int32Array(2) } })).message).toContain(
      'tensor "i": 2 values but I32 [3] needs 3',
    )
    expect(catchError(save({ u: { dtype: 'F16', shape: [2], data: new Uint8Array(3) } })).message).toContain(
      'tensor "u": 3 raw bytes but F16 [2] needs 4',
    )
    expect(catchError(save({ d: { dtype: 'F32', shape: [2], data: new Float64Array(2) as unknown as Float32Array } })).message).toContain(
      'tensor "d": data must be a Float32Array, Int32Array or Uint8Array',
    )
    expect(catchError(save({ a: { dtype: 'F32', shape: [2], data: f } }, { epoch: 3 as unknown as string })).message).toContain(
      'metadata value for "epoch" must be a string, got 3',
    )
  })

  it('raw bytes are written as they are, in any dtype', () => {
    const file = join(tmp, 'raw.safetensors')
    const bytes = new Uint8Array(new Float32Array([0.5, -1]).buffer)
    saveSafetensors(file, {
      r: { dtype: 'F32', shape: [2], data: bytes },
      q: { dtype: 'F8_E4M3', shape: [2], data: new Uint8Array([0x38, 0xc0]) },
    })
    const t = loadSafetensors(file).tensors
    expect(Array.from(t.get('r')!.data)).toEqual([0.5, -1])
    expect(Array.from(t.get('q')!.data)).toEqual([1, -2])
  })
})

describe('sharded checkpoints: the index and the shard boundaries', () => {
  const f32 = (n: number, v = 1): TensorToWrite => ({ dtype: 'F32', shape: [n], data: new Float32Array(n).fill(v) })

  it('refuses an unreadable index, one without a weight_map, and shard names outside the folder', () => {
    const dir = freshDir('bad-index')
    const index = join(dir, 'model.safetensors.index.json')
    writeFileSync(index, '{not json')
    expect(catchError(() => openCheckpointTensors(dir)).message).toMatch(
      /model\.safetensors\.index\.json: not a readable JSON index \(.+\)/,
    )
    for (const bad of ['[]', '{"weight_map": []}', '{"metadata": {}}']) {
      writeFileSync(index, bad)
      expect(catchError(() => openCheckpointTensors(dir)).message).toContain('index must be a JSON object with a "weight_map" object')
    }
    for (const shard of ['', '.', '..', 'sub/x.safetensors', '..\\x.safetensors', 3]) {
      writeFileSync(index, JSON.stringify({ weight_map: { 'a.weight': shard } }))
      expect(catchError(() => openCheckpointTensors(dir)).message, String(shard)).toContain(
        `tensor "a.weight": weight_map names ${JSON.stringify(shard)}, which is not a file name in this folder`,
      )
    }
    writeFileSync(index, JSON.stringify({ weight_map: { 'a.weight': 'gone.safetensors', 'b.weight': 'gone.safetensors' } }))
    expect(catchError(() => openCheckpointTensors(dir)).message).toContain(
      'tensor "a.weight": the index names shard "gone.safetensors", which does not exist',
    )
  })

  it('a shard holds tensors up to exactly maxShardBytes; a tensor larger than that gets a shard of its own', () => {
    const dir = freshDir('boundary')
    // 16 + 16 bytes fit a 32-byte shard exactly; the next starts a new one
    const files = saveCheckpointTensors(
      dir,
      new Map([
        ['a', f32(4)],
        ['b', f32(4)],
        ['c', f32(4)],
      ]),
      { maxShardBytes: 32 },
    )
    expect(files.filter((f) => f.endsWith('.safetensors'))).toEqual([
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
    ])
    const { index } = openCheckpointTensors(dir)
    expect(basename(index.get('a')!.file)).toBe(basename(index.get('b')!.file))
    expect(basename(index.get('c')!.file)).toBe('model-00002-of-00002.safetensors')
    const big = freshDir('big-first')
    saveCheckpointTensors(
      big,
      new Map([
        ['huge', f32(16)],
        ['small', f32(1)],
      ]),
      { maxShardBytes: 32 },
    )
    const bigIndex = openCheckpointTensors(big).index
    expect(basename(bigIndex.get('huge')!.file)).toBe('model-00001-of-00002.safetensors')
    expect(basename(bigIndex.get('small')!.file)).toBe('model-00002-of-00002.safetensors')
  })

  it('maxShardBytes must be positive; a streamed write refuses unknown dtypes and repeated names, and reports its total bytes', async () => {
    const dir = freshDir('stream-refusals')
    for (const max of [0, -1, Number.NaN]) {
      expect(catchError(() => saveCheckpointTensors(dir, new Map([['a', f32(1)]]), { maxShardBytes: max })).message).toContain(
        `maxShardBytes must be positive, got ${max}`,
      )
      await expect(writeCheckpointStream(dir, [], { maxShardBytes: max })).rejects.toThrow(`maxShardBytes must be positive, got ${max}`)
    }
    const src = (name: string, dtype = 'F32') => ({ name, dtype: dtype as DType, shape: [2], bytes: () => new Uint8Array(8) })
    await expect(writeCheckpointStream(dir, [src('a', 'F12')])).rejects.toThrow('tensor "a": unknown dtype "F12"')
    await expect(writeCheckpointStream(dir, [src('a'), src('b'), src('a')])).rejects.toThrow('tensor "a": the tensor is listed twice')
    expect(readdirSync(dir)).toEqual([])
    const seen: [number, number][] = []
    await writeCheckpointStream(dir, [src('a'), { name: 'b', dtype: 'F16', shape: [3], bytes: () => new Uint8Array(6) }], {
      onTensor: (done, total) => {
        seen.push([done, total])
      },
    })
    expect(seen).toEqual([
      [8, 14],
      [14, 14],
    ])
  })
})
