/** The app's name, version and build, for system.info, the window title and the CLI's --version. */
import { version } from '../../package.json'
import { APP_BUILD } from '../shared/build'
import type { SystemInfo } from '../shared/api'

export const APP_NAME = 'MoE Workbench'
export const APP_VERSION: string = version

/** system.info's app: the build where this code was built. */
export const APP_IDENTITY: SystemInfo['app'] = { name: APP_NAME, version: APP_VERSION, ...(APP_BUILD !== null && { build: APP_BUILD }) }
