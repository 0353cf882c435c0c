package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// One TCP port carries two protocols. The dialer writes one byte naming the
// protocol, then speaks it; the mux reads that byte (under a deadline) and
// hands the connection to the matching listener. With TLS configured the
// handshake comes first and the byte travels inside it: a peer without a
// certificate from the cluster CA never reaches either protocol.
const (
	protoRaft byte = 'R' // hashicorp/raft NetworkTransport
	protoRPC  byte = 'C' // cluster RPCs: HTTP/1.1 with JSON (rpc.go)
)

// handshakeTimeout bounds how long an accepted connection may take to send
// its protocol byte, and how long a dialer may take to write it.
const handshakeTimeout = 5 * time.Second

// mux accepts connections on one listener and routes them by first byte.
type mux struct {
	ln   net.Listener
	raft *subListener
	rpc  *subListener
	log  *slog.Logger
	tls  *TLS // nil: plain TCP

	wg        sync.WaitGroup
	closeOnce sync.Once

	// pending are accepted connections that have not sent their protocol
	// byte yet; Close closes them so it never waits out a handshake.
	mu      sync.Mutex
	pending map[net.Conn]struct{}
	closed  bool
	// raftConns are Raft connections accepted or dialed through the mux.
	// NetworkTransport.Close leaves them open; Close closes them so peers see
	// this node go away (reads in their Raft loop fail) as after a crash.
	raftConns map[*trackedConn]struct{}
	// accepted counts Raft connections handed to the transport and not yet
	// closed by it; drained is closed when it reaches zero during Close.
	accepted int
	drained  chan struct{}
}

func newMux(ln net.Listener, advertise net.Addr, tlsCfg *TLS, log *slog.Logger) *mux {
	m := &mux{
		ln:   ln,
		raft: newSubListener(advertise),
		rpc:  newSubListener(advertise),
		log:  log,
		tls:  tlsCfg,

		pending:   map[net.Conn]struct{}{},
		raftConns: map[*trackedConn]struct{}{},
	}
	m.wg.Add(1)
	go m.serve()
	return m
}

func (m *mux) serve() {
	defer m.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient (e.g. EMFILE): back off instead of spinning.
			m.log.Warn("cluster listener accept failed", "error", err, "retry_in", backoff)
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if !m.track(conn) {
			_ = conn.Close()
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(conn)
		}()
	}
}

func (m *mux) route(raw net.Conn) {
	conn := raw
	if m.tls != nil {
		tc, err := m.tls.serverConn(raw, handshakeTimeout)
		if err != nil {
			m.untrack(raw)
			// Warn: a peer with a wrong or missing certificate is an operator
			// mistake (or an intruder) worth seeing at the default level.
			m.log.Warn("cluster connection refused", "remote", raw.RemoteAddr(), "error", err)
			_ = raw.Close()
			return
		}
		conn = tc
	}
	var b [1]byte
	_ = conn.SetReadDeadline(time.Now().Add(handshakeTimeout))
	_, err := conn.Read(b[:])
	m.untrack(raw)
	if err != nil {
		m.log.Debug("cluster connection closed before handshake", "remote", conn.RemoteAddr(), "error", err)
		_ = conn.Close()
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	switch b[0] {
	case protoRaft:
		if tc, err := m.adopt(conn, true); err == nil {
			m.raft.deliver(tc)
		}
	case protoRPC:
		m.rpc.deliver(conn)
	default:
		m.log.Warn("cluster connection with unknown protocol byte", "remote", conn.RemoteAddr(), "byte", b[0])
		_ = conn.Close()
	}
}

func (m *mux) track(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.pending[c] = struct{}{}
	return true
}

func (m *mux) untrack(c net.Conn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.pending, c)
}

// adopt tracks a Raft connection until it or the mux closes.
func (m *mux) adopt(c net.Conn, accepted bool) (net.Conn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, m: m, accepted: accepted}
	m.raftConns[tc] = struct{}{}
	if accepted {
		m.accepted++
	}
	return tc, nil
}

// waitDrained waits (bounded) until the transport has closed every accepted
// connection, i.e. its handler goroutines have returned. hashicorp/raft
// answers heartbeats on those goroutines straight from the stable store, so
// the store must not close under them (it panics "database not open").
func (m *mux) waitDrained() {
	m.mu.Lock()
	if m.accepted == 0 {
		m.mu.Unlock()
		return
	}
	ch := make(chan struct{})
	m.drained = ch
	m.mu.Unlock()
	t := time.NewTimer(handshakeTimeout)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
		m.log.Warn("raft connection handlers still running at close")
	}
}

// trackedConn forgets itself in the mux when closed.
type trackedConn struct {
	net.Conn
	m        *mux
	accepted bool
}

// Close implements net.Conn.
func (c *trackedConn) Close() error {
	m := c.m
	m.mu.Lock()
	if _, ok := m.raftConns[c]; ok {
		delete(m.raftConns, c)
		if c.accepted {
			m.accepted--
			if m.accepted == 0 && m.drained != nil {
				close(m.drained)
				m.drained = nil
			}
		}
	}
	m.mu.Unlock()
	return c.Conn.Close()
}

// Close stops accepting and closes both sub-listeners. Connections already
// handed over belong to their servers.
func (m *mux) Close() error {
	var err error
	m.closeOnce.Do(func() {
		err = m.ln.Close()
		m.mu.Lock()
		m.closed = true
		for c := range m.pending {
			_ = c.Close()
		}
		conns := make([]*trackedConn, 0, len(m.raftConns))
		for c := range m.raftConns {
			conns = append(conns, c)
		}
		m.mu.Unlock()
		for _, c := range conns {
			// The TCP connection itself: a TLS close_notify could wait on a
			// peer that no longer reads, and peers should see a crash-like end.
			_ = netConn(c.Conn).Close()
		}
		m.waitDrained()
		m.raft.Close()
		m.rpc.Close()
		m.wg.Wait()
	})
	return err
}

// subListener is a net.Listener fed by the mux.
type subListener struct {
	addr      net.Addr
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newSubListener(addr net.Addr) *subListener {
	return &subListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *subListener) deliver(conn net.Conn) {
	select {
	case l.conns <- conn:
	case <-l.closed:
		_ = conn.Close()
	}
}

// Accept implements net.Listener.
func (l *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener; it is idempotent.
func (l *subListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

// Addr implements net.Listener. It is the advertised address: raft's
// NetworkTransport reports it as this node's address.
func (l *subListener) Addr() net.Addr { return l.addr }

// netConn returns the TCP connection under a TLS one.
func netConn(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}

// dialProto dials addr, completes the TLS handshake when tlsCfg is set, and
// announces proto; each step is bounded by timeout.
func dialProto(network, addr string, proto byte, timeout time.Duration, tlsCfg *TLS) (net.Conn, error) {
	conn, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		tc, err := tlsCfg.clientConn(conn, addr, min(timeout, handshakeTimeout))
		if err != nil {
			_ = conn.Close()
			return nil, err
		}
		conn = tc
	}
	if err := writeProto(conn, proto, timeout); err != nil {
		return nil, err
	}
	return conn, nil
}

func writeProto(conn net.Conn, proto byte, timeout time.Duration) error {
	_ = conn.SetWriteDeadline(time.Now().Add(min(timeout, handshakeTimeout)))
	if _, err := conn.Write([]byte{proto}); err != nil {
		_ = conn.Close()
		return fmt.Errorf("announce protocol to %s: %w", conn.RemoteAddr(), err)
	}
	_ = conn.SetWriteDeadline(time.Time{})
	return nil
}

// raftLayer is the raft.StreamLayer over the mux.
type raftLayer struct {
	*subListener
	m *mux
}

var _ raft.StreamLayer = raftLayer{}

// Dial implements raft.StreamLayer.
func (l raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	conn, err := dialProto("tcp", string(addr), protoRaft, timeout, l.m.tls)
	if err != nil {
		return nil, err
	}
	return l.m.adopt(conn, false)
}
