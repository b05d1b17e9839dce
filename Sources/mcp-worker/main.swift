print("mcp-worker 0.1.0")
