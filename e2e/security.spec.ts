import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { expect, test } from './fixtures'

test.describe('server mode security', () => {
  test('the API refuses a request without the token (401)', async ({ request, app }) => {
    const res = await request.post(`${app.origin}/api/system.info`)
    expect(res.status()).toBe(401)
    expect((await res.json()).error.code).toBe('unauthorized')
    const wrong = await request.post(`${app.origin}/api/system.info`, { headers: { Authorization: `Bearer ${'0'.repeat(64)}` } })
    expect(wrong.status()).toBe(401)
  })

  test('the API refuses a foreign Origin even with the token (403)', async ({ request, app }) => {
    const res = await request.post(`${app.origin}/api/system.info`, {
      headers: { Authorization: `Bearer ${app.token}`, Origin: 'http://evil.example' },
    })
    expect(res.status()).toBe(403)
    expect((await res.json()).error.code).toBe('forbidden')
  })

  test('a bad payload gets 400 naming the field', async ({ request, app }) => {
    const res = await request.post(`${app.origin}/api/models.inspect`, {
      headers: { Authorization: `Bearer ${app.token}` },
      data: { dir: 42 },
    })
    expect(res.status()).toBe(400)
    const { error } = await res.json()
    expect(error).toMatchObject({ code: 'invalid_argument', field: 'dir' })
    expect(error.message).toContain('dir')
  })

  test.describe('from a browser page on another origin', () => {
    test.use({ allowedConsoleErrors: /ERR_BLOCKED_BY_RESPONSE/ })

    test('its request is refused by the server, even with the token, and the page reads nothing', async ({ page, app }) => {
      // Another site on the same machine (Chromium already blocks public sites from loopback).
      const evil = createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'text/html' }).end('<title>evil</title>'))
      await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve))
      try {
        await page.goto(`http://127.0.0.1:${(evil.address() as AddressInfo).port}/`)
        const failed = page.waitForEvent('requestfailed', (r) => r.url().includes('/api/system.info'))
        await page.evaluate(
          async ({ origin, token }) => {
            // A "simple" cross-site POST: no preflight, so it reaches the server.
            await fetch(`${origin}/api/system.info?token=${token}`, { method: 'POST', mode: 'no-cors' }).catch(() => undefined)
          },
          { origin: app.origin, token: app.token },
        )
        // The page gets nothing (the answer is not same-origin)...
        expect((await failed).failure()?.errorText).toMatch(/ERR_BLOCKED_BY_RESPONSE/)
        // ...and the server refused it for its Origin, token or not.
        await expect
          .poll(() => app.stderr())
          .toMatch(/refused POST \/api\/system\.info: Origin "http:\/\/127\.0\.0\.1:\d+" may not call this server/)
      } finally {
        evil.close()
      }
    })
  })

  test('static files come with security headers and stay inside the renderer folder', async ({ request, app }) => {
    const page = await request.get(`${app.origin}/`)
    expect(page.status()).toBe(200)
    expect(page.headers()['content-security-policy']).toContain("default-src 'self'")
    expect(page.headers()['x-frame-options']).toBe('DENY')
    expect(page.headers()['referrer-policy']).toBe('no-referrer')
    const escape = await request.get(`${app.origin}/assets/..%2f..%2f..%2fpackage.json`)
    expect(escape.status()).toBe(404)
  })
})
