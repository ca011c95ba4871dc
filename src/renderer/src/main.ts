import { createPinia } from 'pinia'
import { createApp } from 'vue'
import App from './App.vue'
import { setUploader, setWorkbench } from './api/client'
import { chooseTransport, chooseUploader } from './api/transport'
import './assets/main.css'

setWorkbench(chooseTransport())
setUploader(chooseUploader())

const app = createApp(App)
app.use(createPinia())
app.config.errorHandler = (error, _instance, info) => {
  console.error(`[workbench] ${info}:`, error)
}
app.mount('#app')
