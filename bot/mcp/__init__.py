"""The MCP face: the guarded tools and the staff acts served over the Model Context Protocol."""
