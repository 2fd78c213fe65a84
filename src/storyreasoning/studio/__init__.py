"""The studio: a local web app to tell, inspect and browse grounded stories.

``storyreasoning studio`` starts a FastAPI server (bound to 127.0.0.1 unless told
otherwise) that serves the page from ``studio/static/`` (no CDN: it works offline) and
the JSON and server-sent-events API of ``studio/API.md``:

* **Tell**: upload images (type judged by content, size and count limited), generate
  with the configured storyteller (an OpenAI-compatible endpoint, local weights or the
  offline baseline) and stream the raw text and the streaming parser's events to the
  page; cancel at any time. An API key stays on the server.
* **Inspect**: parse a pasted output; export any telling as one self-contained HTML page.
* **Browse**: the stories of the configured datasets and the outputs and per-story
  metrics of evaluation runs.

Modules: :mod:`.config` (what the server is told), :mod:`.app` (the routes),
:mod:`.jobs` (tell jobs in worker threads), :mod:`.uploads` (checked images in memory),
:mod:`.catalog` (datasets and runs, by name), :mod:`.multipart` (form uploads streamed through python-multipart, within our limits), :mod:`.server` (uvicorn on a bound socket), :mod:`.commands` (the CLI).
Importing this package loads none of them (nor FastAPI).
"""
