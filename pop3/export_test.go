package pop3

// Hooks for the external tests (compiled into tests only).

// SetLoopbackSecure sets whether loopback peers count as secure, so tests on
// 127.0.0.1 can see how a non-loopback client without TLS is treated.
func SetLoopbackSecure(s *Server, secure bool) { s.loopbackSecure = secure }

// Panics returns the number of sessions that panicked and were recovered.
func Panics(s *Server) int64 { return s.panics.Load() }
