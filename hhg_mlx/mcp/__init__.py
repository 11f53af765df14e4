"""`hhg mcp`: hhg's search as Model Context Protocol tools for coding agents (the `hhg[mcp]` extra).

`command` is the subcommand (it imports the SDK only to serve), `config` the client snippets,
`workspace` the long-lived state and the tools' work (no SDK), `tools` their schemas and texts,
`server` the SDK glue over stdio.
"""
