// Package serve is `sli2vol serve`'s HTTP server: it holds one loaded model, serves the web
// page, and exposes the JSON + binary API of docs/api.md — sessions, volumes (uploaded NIfTI
// or zipped DICOM, or opened under a data root), propagation jobs queued on one worker per
// device, their progress as Server-Sent Events, and the masks as NIfTI on the input's grid.
//
// Safety is the default: sessions are isolated behind unguessable ids and expire; stored
// volumes and masks are capped, the least recently used evicted first; uploads are bounded
// before their bodies are read; data-root paths cannot leave the root; a token, when set, is
// required on every request; no CORS headers unless an origin is configured; a bad request
// gets a 4xx with a one-line JSON error and a panicking handler a 500, and the server keeps
// serving. Only the standard library's net/http is used.
package serve
