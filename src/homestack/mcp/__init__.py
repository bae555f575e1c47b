"""homestack's MCP server: the knowledge tools for agents, over stdio and streamable HTTP."""
