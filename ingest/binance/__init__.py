"""Everything that speaks Binance: stream names, WebSocket connections, REST, frame parsing."""
