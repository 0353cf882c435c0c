package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// TLS is mutual TLS for the cluster port, as in Nomad, Consul and rqlite: one
// cluster CA, a certificate per node. Both sides present their certificate
// and verify the other's against the CA; a node also checks that the peer it
// dialled holds a certificate for the host it dialled (a SAN of the address
// in Peers, Join or the Raft configuration). TLS wraps the whole muxed
// connection, so the protocol byte and everything after it (Raft and cluster
// RPC alike) travel encrypted, and nothing is routed before the handshake.
type TLS struct {
	server *tls.Config
	client *tls.Config
}

// LoadTLS reads a PEM CA bundle and this node's PEM certificate and key.
func LoadTLS(caFile, certFile, keyFile string) (*TLS, error) {
	if caFile == "" || certFile == "" || keyFile == "" {
		return nil, errors.New("cluster tls: the CA, certificate and key files are all required")
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cluster tls: read CA: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster tls: load certificate %s and key %s: %w", certFile, keyFile, err)
	}
	t, err := NewTLS(caPEM, cert)
	if err != nil {
		return nil, fmt.Errorf("%w (CA file %s)", err, caFile)
	}
	return t, nil
}

// NewTLS builds the configuration from a PEM CA bundle and this node's certificate.
func NewTLS(caPEM []byte, cert tls.Certificate) (*TLS, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("cluster tls: no CA certificate found in the CA PEM")
	}
	// Every node is our own Go binary, so there is no old peer to stay
	// compatible with: TLS 1.3 only.
	server := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}
	client := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
	}
	return &TLS{server: server, client: client}, nil
}

// serverConn starts TLS on an accepted connection and completes the handshake
// within timeout; the caller closes conn on error.
func (t *TLS) serverConn(conn net.Conn, timeout time.Duration) (net.Conn, error) {
	tc := tls.Server(conn, t.server)
	if err := handshake(tc, timeout); err != nil {
		return nil, fmt.Errorf("tls handshake with %s: %w", conn.RemoteAddr(), err)
	}
	return tc, nil
}

// clientConn starts TLS on a dialled connection to addr, verifying that the
// peer's certificate names addr's host; the caller closes conn on error.
func (t *TLS) clientConn(conn net.Conn, addr string, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("tls to %s: %w", addr, err)
	}
	cfg := t.client.Clone()
	cfg.ServerName = host
	tc := tls.Client(conn, cfg)
	if err := handshake(tc, timeout); err != nil {
		return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
	}
	return tc, nil
}

func handshake(tc *tls.Conn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	return tc.SetDeadline(time.Time{})
}
