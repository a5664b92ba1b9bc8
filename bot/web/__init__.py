"""The website chat face: an HTTP API (JSON and Server-Sent Events) for a support widget."""
