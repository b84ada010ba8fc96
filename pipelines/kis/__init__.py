"""The KIS Open API: the wire protocol, output1 layouts, HTTP client, token cache and pacing."""
