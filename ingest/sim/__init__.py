"""A Binance-compatible exchange simulator (WebSocket + REST on one port) with fault injection."""
