"""The web view: HTML pages, a JSON API and XML-RPC over HTTP and HTTPS."""
