"""The KIS Open API: protocol, HTTP client, token cache and a local simulator."""
