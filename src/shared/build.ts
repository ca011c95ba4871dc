/**
 * Which build of the app this code is: electron-vite replaces __WORKBENCH_BUILD__ with the same
 * id in the main bundle and the page (electron.vite.config.ts: the version and a hash of the
 * sources). Null where the code runs from source (tests, tsx), unbuilt.
 */
declare const __WORKBENCH_BUILD__: string | undefined

export const APP_BUILD: string | null = typeof __WORKBENCH_BUILD__ === 'string' ? __WORKBENCH_BUILD__ : null

/**
 * What the page should tell its user when the server answering it is another build than the page
 * (a server left running while the app was updated or rebuilt: the page's requests meet an API
 * that does not know them, "unknown field" and the like), or null when they match or either is
 * unbuilt. A server from before builds were compared sends none: another build too.
 */
export function buildMismatch(pageBuild: string | null, server: { version: string; build?: string }): string | null {
  if (pageBuild === null || server.build === pageBuild) return null
  const serverSide = server.build ?? `${server.version}, an older build`
  return `This page (${pageBuild}) and the server answering it (${serverSide}) are different builds of MoE Workbench: the server was left running while the app was updated or rebuilt, so some requests will fail or behave as the old version did. Stop the server (Ctrl-C where “moe-workbench serve” runs) and start it again, then reload this page.`
}
