/** The app's name and version, for system.info, the window title and the CLI's --version. */
import { version } from '../../package.json'

export const APP_NAME = 'MoE Workbench'
export const APP_VERSION: string = version
