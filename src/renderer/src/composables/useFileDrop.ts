/**
 * Dropping a file or folder onto the window gives its path, where the desktop app can tell it.
 *
 * A browser never reveals paths: in server mode a drop gives the file itself to `onFile` (to
 * upload it), where the caller takes one. Electron gave `File.path` until version 32; newer
 * versions need the preload's `webUtils.getPathForFile`, looked for as
 * `window.workbench.pathForFile`. Listeners live as long as the component.
 */
import { onBeforeUnmount, onMounted, ref } from 'vue'

type PathForFile = (file: File) => string

/** The path of a file the user chose or dropped, where the desktop app can tell it; else null. */
export function pathOf(file: File): string | null {
  const viaPreload = (window.workbench as { pathForFile?: PathForFile } | undefined)?.pathForFile
  const path = viaPreload ? viaPreload(file) : (file as File & { path?: string }).path
  return typeof path === 'string' && path.length > 0 ? path : null
}

/** Whether a drop can give a path here (the desktop app). */
export function canDropPaths(): boolean {
  return typeof window !== 'undefined' && window.workbench !== undefined
}

export function useFileDrop(onPath: (path: string) => void, onFile?: (file: File) => void) {
  /** A drag is over the window. */
  const dragging = ref(false)
  /** Why the last drop gave nothing. */
  const dropError = ref<string | null>(null)
  let depth = 0

  const hasFiles = (e: DragEvent): boolean => !!e.dataTransfer && [...e.dataTransfer.types].includes('Files')

  function onEnter(e: DragEvent): void {
    if (!hasFiles(e)) return
    depth++
    dragging.value = true
  }
  function onLeave(e: DragEvent): void {
    if (!hasFiles(e)) return
    depth = Math.max(0, depth - 1)
    if (depth === 0) dragging.value = false
  }
  function onOver(e: DragEvent): void {
    if (!hasFiles(e)) return
    e.preventDefault()
    if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy'
  }
  function onDrop(e: DragEvent): void {
    if (!hasFiles(e)) return
    e.preventDefault()
    depth = 0
    dragging.value = false
    const file = e.dataTransfer?.files[0]
    if (!file) return
    const path = pathOf(file)
    if (path) {
      dropError.value = null
      onPath(path)
    } else if (onFile) {
      dropError.value = null
      onFile(file)
    } else {
      dropError.value = canDropPaths()
        ? `Could not read the path of “${file.name}”; type it in the field instead.`
        : `The browser does not reveal where “${file.name}” is on disk; type its path (on the server's machine) instead.`
    }
  }

  onMounted(() => {
    window.addEventListener('dragenter', onEnter)
    window.addEventListener('dragleave', onLeave)
    window.addEventListener('dragover', onOver)
    window.addEventListener('drop', onDrop)
  })
  onBeforeUnmount(() => {
    window.removeEventListener('dragenter', onEnter)
    window.removeEventListener('dragleave', onLeave)
    window.removeEventListener('dragover', onOver)
    window.removeEventListener('drop', onDrop)
  })

  return { dragging, dropError }
}
