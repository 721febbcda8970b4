"""The read-only web dashboard: `orchctl dashboard` asks orchd to serve it on 127.0.0.1.

`pages` turns the fold into what a page shows (pure), `live` carries the log's commits to the
open pages as deltas, `app` is the web application (the token gate, the routes), `server` runs
it on one thread of orchd. Nothing here is imported until the dashboard is first asked for.
"""
