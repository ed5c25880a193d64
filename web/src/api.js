// The client side of docs/api.md (the `sli2vol serve` HTTP API). Every request carries the
// page's token: as a Bearer header where fetch can set one, as ?token= where the browser makes
// the request itself (EventSource, <a download>), which cannot set headers.

export class ApiError extends Error {
  constructor (status, message) {
    super(message)
    this.status = status
  }
}

export class Api {
  constructor (token, base = '') {
    this.token = token || ''
    this.base = base
  }

  // url for requests the browser makes without our headers.
  url (path) {
    if (!this.token) return this.base + path
    const sep = path.includes('?') ? '&' : '?'
    return `${this.base}${path}${sep}token=${encodeURIComponent(this.token)}`
  }

  async request (method, path, { json, body, contentType, signal, keepalive } = {}) {
    const headers = {}
    if (this.token) headers.Authorization = `Bearer ${this.token}`
    if (json !== undefined) {
      body = JSON.stringify(json)
      headers['Content-Type'] = 'application/json'
    } else if (body !== undefined) {
      headers['Content-Type'] = contentType || 'application/octet-stream'
    }
    let res
    try {
      res = await fetch(this.base + path, { method, headers, body, signal, keepalive })
    } catch (e) {
      if (e.name === 'AbortError') throw e
      throw new ApiError(0, `${method} ${path}: the server cannot be reached (${e.message})`)
    }
    if (!res.ok) {
      // The contract promises {"error": "..."}; a proxy in between may answer otherwise.
      let msg = `${res.status} ${res.statusText}`
      try {
        const j = await res.json()
        if (j && j.error) msg = j.error
      } catch {}
      if (res.status === 401) msg = 'not authorized: open the page with the ?token=… the server printed'
      throw new ApiError(res.status, msg)
    }
    return res
  }

  async getJSON (path) { return (await this.request('GET', path)).json() }
  async postJSON (path, json) { return (await this.request('POST', path, { json })).json() }
  async getBytes (path, signal) { return (await this.request('GET', path, { signal })).arrayBuffer() }
}
