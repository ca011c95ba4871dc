/**
 * Datasets: a file inspected before it is imported (validation report, layout and column
 * mapping, a preview of rows as the model sees them, token lengths), the import with its
 * progress, and the workspace's datasets. In server mode a file from the browser is uploaded
 * into the server's workspace first, then read by its path there like a typed one.
 */
import { defineStore } from 'pinia'
import { computed, ref, watch } from 'vue'
import type { WorkbenchEvent } from '../../../shared/api'
import type {
  ColumnMapping,
  DatasetFormat,
  DatasetLayout,
  DatasetManifest,
  DatasetProgress,
  DatasetsImportArgs,
  DatasetsInspectArgs,
  InspectResult,
} from '../../../shared/dataset'
import { ApiError } from '../../../shared/api'
import { useUploader, useWorkbench } from '../api/client'
import { type UiError, isCancelled, toUiError } from '../errors'
import { formatBytes, formatTime } from '../format'
import { validationCount } from '../../../shared/dataset'
import { listener } from './listen'
import { useModelsStore } from './models'

export const PREVIEW_PAGE = 10

/** How to read the file: what the user chose in the form. */
export interface ReadOptions {
  file: string
  layout: DatasetLayout | null
  mapping: ColumnMapping
  /** Model folder whose tokenizer and chat template measure and render the rows. */
  model: string
  maxLength: number | null
  format: DatasetFormat | null
  textUnit: 'line' | 'paragraph'
}

export interface ImportOptions {
  name: string
  validation: number
  seed: number
  dedupe: boolean
  acceptInvalid: boolean
}

export function emptyReadOptions(): ReadOptions {
  return { file: '', layout: null, mapping: {}, model: '', maxLength: null, format: null, textUnit: 'line' }
}

/** What detection chose for a file: sent back only where the user changed it. */
export interface Detected {
  layout: DatasetLayout | null
  mapping: ColumnMapping
}

function sameMapping(a: ColumnMapping, b: ColumnMapping): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)])
  return [...keys].every((k) => (a[k] || undefined) === (b[k] || undefined))
}

export function inspectArgs(o: ReadOptions, previewOffset = 0, detected: Detected | null = null): DatasetsInspectArgs {
  const args: DatasetsInspectArgs = { file: o.file.trim(), preview: { offset: previewOffset, limit: PREVIEW_PAGE } }
  const ownLayout = o.layout && o.layout !== detected?.layout
  if (ownLayout) args.layout = o.layout as DatasetLayout
  const mapping = Object.fromEntries(Object.entries(o.mapping).filter(([, column]) => column))
  // Detection's own mapping is left to detection (it may name optional columns the file lacks).
  if (Object.keys(mapping).length && (ownLayout || !detected || !sameMapping(mapping, detected.mapping))) args.mapping = mapping
  if (o.model) args.model = o.model
  if (o.maxLength !== null && o.model) args.maxLength = o.maxLength
  if (o.format) args.format = o.format
  if (o.textUnit !== 'line') args.textUnit = o.textUnit
  return args
}

/** The form's names of the fields the service may name ("file: ..." meant nothing on screen). */
const READ_LABELS: Record<string, string> = {
  file: 'Dataset file',
  model: 'Tokenizer and chat template',
  maxLength: 'Longest row',
  name: 'Name',
  'split.validation': 'Held out for validation',
}

/**
 * What Delete asks about a dataset: the imported copy goes, and the runs trained on it lose it
 * (they keep their results; Run again and evaluation need another dataset). It asked nothing of them.
 */
export function datasetDeleteQuestion(id: string, runs: readonly { dataset?: string }[]): string {
  const used = runs.filter((r) => r.dataset === id).length
  const base = 'The imported copy goes; the file it came from stays.'
  if (!used) return base
  return `${base} ${used === 1 ? '1 run was' : `${used} runs were`} trained on it: ${used === 1 ? 'it keeps its' : 'they keep their'} results, but Run again and evaluation will need another dataset.`
}

export const useDatasetsStore = defineStore('datasets', () => {
  const list = ref<DatasetManifest[]>([])
  const listLoading = ref(false)
  /** The list has been read once: an id not in it is of a deleted dataset. */
  const loaded = ref(false)
  const listError = ref<UiError | null>(null)

  const options = ref<ReadOptions>(emptyReadOptions())
  const importOptions = ref<ImportOptions>({ name: '', validation: 0.1, seed: 0, dedupe: false, acceptInvalid: false })

  const inspected = ref<InspectResult | null>(null)
  /** The read options the inspection used (the import uses the same). */
  const inspectedWith = ref<ReadOptions | null>(null)
  const previewOffset = ref(0)
  const inspecting = ref(false)
  const inspectError = ref<UiError | null>(null)

  const importing = ref(false)
  const importError = ref<UiError | null>(null)
  const imported = ref<DatasetManifest | null>(null)

  /** Progress of the inspection or import under way (from dataset.progress events). */
  const progress = ref<(DatasetProgress & { operation: 'inspect' | 'import' }) | null>(null)
  const progressFraction = computed(() => {
    const p = progress.value
    return p && p.totalBytes > 0 ? Math.min(1, p.bytesRead / p.totalBytes) : null
  })

  /** Incremented per call, so the result of a call the user abandoned is ignored. */
  let generation = 0
  let activeFile: string | null = null
  /** Server mode: each uploaded file's path on the server, and the name it had in the browser. */
  const uploadedNames = new Map<string, string>()
  /**
   * An error about an uploaded file in the words of the file the user chose: the server's copy's
   * path ("…/uploads/2026-12-05-18-04-41-be4a47/empty.csv is empty") is a folder they never saw.
   */
  function aboutFile(e: unknown, file: string): UiError {
    const error = toUiError(e, READ_LABELS)
    const name = uploadedNames.get(file)
    return name ? { ...error, message: error.message.split(file).join(name) } : error
  }
  /** Detection's layout and mapping for `detectedFile`, from an inspection without overrides. */
  let detected: Detected | null = null
  let detectedFile: string | null = null

  /** The upload under way (server mode): the file's name and the bytes sent of its total. */
  const upload = ref<{ name: string; sent: number; total: number } | null>(null)
  const uploadFraction = computed(() => (upload.value && upload.value.total > 0 ? upload.value.sent / upload.value.total : null))
  const uploadError = ref<UiError | null>(null)
  /** The largest upload the server takes, once asked. */
  const uploadLimit = ref<number | null>(null)
  let uploadAbort: AbortController | null = null

  const busy = computed(() => inspecting.value || importing.value || upload.value !== null)
  /** The name the import takes where the name field is left empty. */
  const defaultName = computed(() => (inspected.value ? baseName(inspected.value.file) : ''))
  const hasInvalid = computed(() => (inspected.value?.report.invalid ?? 0) > 0)
  /**
   * What the import will make of the inspected rows: duplicates left out where asked, then the
   * import's own split rule; null while the held-out share is one the import refuses (no counts
   * to believe beside the field's error).
   */
  const importEstimate = computed(() => {
    const o = importOptions.value
    if (!(o.validation >= 0 && o.validation < 1)) return null
    const rows = (inspected.value?.report.valid ?? 0) - (o.dedupe ? (inspected.value?.stats.duplicates ?? 0) : 0)
    const validation = validationCount(rows, o.validation)
    return { rows, train: rows - validation, validation }
  })
  /** Whether the form changed since the last inspection (the import needs a fresh one). */
  const stale = computed(() => JSON.stringify(inspectedWith.value) !== JSON.stringify(options.value))

  // What was chosen for one file (layout, columns, format, accepting its invalid rows) says nothing
  // about the next: another file, typed or dropped, goes back to detection even without "Start over".
  watch(
    () => options.value.file.trim(),
    (file, before) => {
      if (file === before) return
      const o = options.value
      o.layout = null
      o.mapping = {}
      o.format = null
      o.textUnit = 'line'
      const imp = importOptions.value
      if (inspectedWith.value && imp.name === baseName(inspectedWith.value.file.trim())) imp.name = ''
      imp.acceptInvalid = false
    },
    { flush: 'sync' },
  )

  async function refresh(): Promise<void> {
    listLoading.value = true
    listError.value = null
    try {
      list.value = await useWorkbench().datasets.list()
      loaded.value = true
    } catch (e) {
      listError.value = toUiError(e)
    } finally {
      listLoading.value = false
    }
  }

  async function inspect(offset = 0): Promise<void> {
    if (!options.value.file.trim()) {
      // The service would say "file: must not be empty": say what to do instead, in the form's words.
      inspectError.value = { message: 'Type the path of a dataset file, or choose one.', field: 'file', code: 'invalid_argument' }
      return
    }
    const id = ++generation
    const used = cloneJson(options.value)
    const args = inspectArgs(used, offset, used.file.trim() === detectedFile ? detected : null)
    activeFile = args.file
    inspecting.value = true
    inspectError.value = null
    imported.value = null
    progress.value = null
    try {
      const result = await useWorkbench().datasets.inspect(args)
      if (id !== generation) return
      inspected.value = result
      previewOffset.value = offset
      // What detection chose, so the form shows it and an override starts from it.
      // Only columns the file has (detection may name optional ones it lacks, e.g. alpaca's system).
      const found = Object.fromEntries(Object.entries(result.mapping).filter(([, column]) => column && result.columns.includes(column)))
      if (!args.layout && !args.mapping) {
        detected = { layout: result.layout, mapping: found }
        detectedFile = args.file
      }
      const effective: ReadOptions = {
        ...used,
        layout: used.layout ?? result.layout,
        mapping: Object.keys(used.mapping).length ? used.mapping : found,
      }
      if (JSON.stringify(options.value) === JSON.stringify(used)) options.value = cloneJson(effective)
      inspectedWith.value = effective
      if (!importOptions.value.name) importOptions.value.name = baseName(result.file)
    } catch (e) {
      if (id !== generation) return
      inspectError.value = aboutFile(e, args.file)
      if (offset === 0) inspected.value = null
    } finally {
      if (id === generation) {
        inspecting.value = false
        progress.value = null
      }
    }
  }

  /**
   * Rows longer than the model's positions where no "Longest row" was set: training cuts them and
   * evaluation cannot answer them (a 200,000-token row read as valid beside a 512-position model).
   */
  const pastPositions = computed(() => {
    const t = inspected.value?.stats.tokens
    const dir = inspectedWith.value?.model
    const positions = dir ? useModelsStore().entries.find((m) => m.dir === dir)?.info?.maxPositionEmbeddings : undefined
    if (!t || positions === undefined || t.max <= positions || inspectedWith.value?.maxLength) return null
    return { positions, max: t.max, many: t.p95 > positions }
  })

  /** The file and settings of the last import done from this form (a second click made a twin). */
  const importedKey = ref<string | null>(null)
  const importKey = (): string => JSON.stringify([options.value, importOptions.value])
  /** The form's file was imported with these very settings already. */
  const alreadyImported = computed(() => imported.value !== null && importedKey.value === importKey())

  /**
   * A dataset's name, with when it was imported where another has the same name (the same file
   * imported twice was listed twice alike in every picker), and its id where even that is shared;
   * the id of one deleted since (a run's, an analysis's) says so.
   */
  function displayName(id: string): string {
    const d = list.value.find((x) => x.id === id)
    if (!d) return loaded.value ? `${id} (deleted)` : id
    const namesakes = list.value.filter((x) => x.name === d.name && x.id !== d.id)
    if (namesakes.length === 0) return d.name
    const when = formatTime(d.createdAt)
    return namesakes.some((x) => formatTime(x.createdAt) === when)
      ? `${d.name} (imported ${when}, ${d.id})`
      : `${d.name} (imported ${when})`
  }

  /** Whether the list (once read) holds the dataset. */
  function exists(id: string): boolean {
    return !loaded.value || list.value.some((d) => d.id === id)
  }

  /** Removes an imported dataset from the workspace (its source file stays); throws the UiError to show. */
  async function remove(id: string): Promise<void> {
    try {
      await useWorkbench().datasets.delete({ id })
    } catch (e) {
      throw toUiError(e)
    }
    list.value = list.value.filter((d) => d.id !== id)
    if (imported.value?.id === id) imported.value = null
  }

  async function importDataset(): Promise<DatasetManifest | null> {
    const id = ++generation
    const key = importKey()
    const o = importOptions.value
    const args: DatasetsImportArgs = {
      ...inspectArgs(options.value, 0, options.value.file.trim() === detectedFile ? detected : null),
      split: { validation: o.validation, seed: o.seed },
      dedupe: o.dedupe,
      acceptInvalid: o.acceptInvalid,
    }
    delete args.preview
    if (o.name.trim()) args.name = o.name.trim()
    activeFile = args.file
    importing.value = true
    importError.value = null
    progress.value = null
    try {
      const manifest = await useWorkbench().datasets.import(args)
      if (id !== generation) return null
      imported.value = manifest
      importedKey.value = key
      list.value = [manifest, ...list.value.filter((d) => d.id !== manifest.id)]
      return manifest
    } catch (e) {
      if (id === generation) importError.value = aboutFile(e, args.file)
      return null
    } finally {
      if (id === generation) {
        importing.value = false
        progress.value = null
      }
    }
  }

  /** Whether files can be uploaded here (server mode) rather than named by path. */
  function canUpload(): boolean {
    return useUploader() !== null
  }

  /** Server mode: asks the server's upload limit, to show it (asked again at the upload when this fails). */
  async function fetchUploadLimit(): Promise<void> {
    try {
      uploadLimit.value = (await useUploader()?.limit()) ?? null
    } catch {
      // the upload asks again, and says what went wrong
    }
  }

  /**
   * Server mode: sends a file chosen or dropped in the browser into the server's workspace, then
   * inspects it there, as a new file. False when it did not get that far (uploadError says why).
   */
  async function uploadFile(file: Blob & { readonly name: string }): Promise<boolean> {
    const uploader = useUploader()
    abandon()
    uploadError.value = null
    if (!uploader) {
      uploadError.value = { message: 'Type the path of the file instead.', field: 'file' }
      return false
    }
    const id = ++generation
    const controller = new AbortController()
    uploadAbort = controller
    upload.value = { name: file.name, sent: 0, total: file.size }
    try {
      const limit = await uploader.limit()
      uploadLimit.value = limit
      if (file.size > limit)
        throw new ApiError(
          'invalid_argument',
          `${file.name} is ${formatBytes(file.size)}, and the server takes uploads up to ${formatBytes(limit)}. Copy it to the server (scp, rsync) and type its path instead.`,
          'file',
        )
      const sent = await uploader.upload(file, {
        signal: controller.signal,
        onProgress: (bytes, total) => {
          if (id === generation) upload.value = { name: file.name, sent: bytes, total }
        },
      })
      if (id !== generation) return false
      upload.value = null
      uploadAbort = null
      // The file is on the server now: read it as a new file, by its path there.
      uploadedNames.set(sent.file, file.name)
      reset(sent.file)
      await inspect()
      return true
    } catch (e) {
      if (id === generation) {
        upload.value = null
        uploadAbort = null
        if (!isCancelled(e)) uploadError.value = toUiError(e)
      }
      return false
    }
  }

  /** Cancels the upload, inspection or import under way (an import leaves nothing behind). */
  function abandon(): void {
    uploadAbort?.abort()
    uploadAbort = null
    upload.value = null
    if (activeFile && (inspecting.value || importing.value))
      void useWorkbench()
        .datasets.cancel(activeFile)
        .catch(() => {})
    generation++
    inspecting.value = false
    importing.value = false
    progress.value = null
    activeFile = null
  }

  /** Starts over with another file. */
  function reset(file = ''): void {
    abandon()
    detected = null
    detectedFile = null
    options.value = { ...emptyReadOptions(), file, model: options.value.model, maxLength: options.value.maxLength }
    importOptions.value = { ...importOptions.value, name: '', acceptInvalid: false }
    inspected.value = null
    inspectedWith.value = null
    inspectError.value = null
    importError.value = null
    uploadError.value = null
    imported.value = null
  }

  function onEvent(event: WorkbenchEvent): void {
    if (event.type !== 'dataset.progress' || event.file !== activeFile) return
    if (!busy.value) return
    progress.value = { ...event.progress, operation: event.operation }
  }

  const listen = listener(onEvent)

  return {
    remove,
    displayName,
    exists,
    list,
    listLoading,
    listError,
    options,
    importOptions,
    inspected,
    inspectedWith,
    previewOffset,
    inspecting,
    inspectError,
    importing,
    importError,
    imported,
    alreadyImported,
    pastPositions,
    progress,
    progressFraction,
    upload,
    uploadFraction,
    uploadError,
    uploadLimit,
    busy,
    hasInvalid,
    importEstimate,
    defaultName,
    stale,
    refresh,
    inspect,
    importDataset,
    abandon,
    reset,
    canUpload,
    fetchUploadLimit,
    uploadFile,
    onEvent,
    listen,
  }
})

/** The file's name without its extension: the name an import gets when none is typed (as the service's basename(f, extname(f))). */
function baseName(path: string): string {
  const name = path.split(/[\\/]/).pop() ?? path
  return name.replace(/(.)\.[^.]*$/, '$1')
}

/** A deep copy of plain JSON data (structuredClone refuses Vue's reactive proxies). */
function cloneJson<T>(x: T): T {
  return JSON.parse(JSON.stringify(x)) as T
}
