package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// A cluster whose nodes speak only mutual TLS elects a leader, takes joins,
// forwards a follower's write to the leader and replicates it everywhere.
func TestTLSClusterReplicates(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode bootMode
	}{
		{"static peers", bootPeers},
		{"join", bootJoin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newTestCA(t, "cluster CA")
			c := startCluster(t, 3, tc.mode, withTLS(ca))
			follower := c.follower()
			mustApply(t, follower, setPool(5))
			resp := mustApply(t, follower, &fsm.SandboxCreate{ID: "sb-tls"})
			if resp.Sandbox == nil || resp.Sandbox.ID != "sb-tls" {
				t.Fatalf("forwarded create returned %+v", resp)
			}
			if err := follower.ConsistentRead(testCtx(t, 10*time.Second)); err != nil {
				t.Fatalf("consistent read on a follower over TLS: %v", err)
			}
			c.waitConverged()
			for _, n := range c.running() {
				if _, err := n.FSM().Sandbox("sb-tls"); err != nil {
					t.Errorf("node %s: %v", n.ID(), err)
				}
			}
		})
	}
}

// Only a client holding a certificate from the cluster CA reaches the
// cluster RPCs: without one, with one from another CA, or in plain TCP, the
// connection ends before any RPC is served and the state does not change.
func TestTLSRefusesUntrustedClients(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	foreign := newTestCA(t, "foreign CA")
	c := startCluster(t, 3, bootJoin, withTLS(ca))
	leader := c.leader()
	mustApply(t, leader, setPool(5))

	for _, tc := range []struct {
		name   string
		tls    bool
		cert   *tls.Certificate
		wantOK bool
	}{
		{name: "plain TCP", tls: false},
		{name: "TLS without a certificate", tls: true},
		{name: "certificate from a foreign CA", tls: true, cert: ptr(foreign.issue("intruder", "127.0.0.1"))},
		{name: "certificate from the cluster CA", tls: true, cert: ptr(ca.issue("operator", "127.0.0.1")), wantOK: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, beforeIdx := stateOf(leader), leader.AppliedIndex()
			max := 40 + len(tc.name) // a pool size no other case sets
			body, err := fsm.Encode(&fsm.SetPool{Header: fsm.Header{Now: time.Now().UTC()}, Pool: setPool(max).Pool})
			if err != nil {
				t.Fatal(err)
			}
			var clientTLS *tls.Config
			if tc.tls {
				roots := x509.NewCertPool()
				roots.AppendCertsFromPEM(ca.pem) // the client trusts the server: only its own credentials differ
				clientTLS = &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
				if tc.cert != nil {
					// Sent whatever CAs the server asks for: Go's client would
					// otherwise keep a foreign certificate to itself.
					cert := tc.cert
					clientTLS.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
				}
			}
			reply, err := postRaw(t, leader.Addr(), pathApply, body, clientTLS)
			if tc.wantOK {
				if err != nil || reply.Error != nil || reply.Response == nil {
					t.Fatalf("apply with a cluster certificate: err %v reply %+v", err, reply)
				}
				if got := leader.FSM().Pool().MaxSize; got != max {
					t.Fatalf("pool max = %d after the accepted apply, want %d", got, max)
				}
				return
			}
			if err == nil {
				t.Fatalf("apply was answered (%+v), want the connection refused", reply)
			}
			t.Logf("refused as wanted: %v", err)
			// Nothing of the refused request may reach the log: a write applied
			// later would show in the state or the applied index.
			// A command through the log as a barrier (a business error is fine).
			if _, err := leader.Apply(testCtx(t, 10*time.Second), &fsm.SandboxTouch{IDs: []string{"none"}}); err != nil && errors.Is(err, ErrTimeout) {
				t.Fatal(err)
			}
			if got := stateOf(leader); got != before || leader.FSM().Pool().MaxSize == max {
				t.Fatalf("state changed by a refused client:\n got %s\nwant %s", got, before)
			}
			if leader.AppliedIndex() != beforeIdx+1 {
				t.Fatalf("applied index %d, want %d (only the barrier)", leader.AppliedIndex(), beforeIdx+1)
			}
		})
	}
}

// A node checks that the peer it dials holds a certificate for the host it
// dialled, so a stolen certificate for one name cannot impersonate another.
func TestTLSChecksPeerHostname(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	for _, tc := range []struct {
		name   string
		sans   []string
		wantOK bool
	}{
		{"certificate names the dialled host", []string{"127.0.0.1"}, true},
		{"certificate names another host", []string{"10.1.2.3"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := NewTLS(ca.pem, ca.issue("server", tc.sans...))
			if err != nil {
				t.Fatal(err)
			}
			c := startCluster(t, 1, bootJoin, func(cfg *Config) { cfg.TLS = srv })
			conn, err := dialProto("tcp", c.node(0).Addr(), protoRPC, 5*time.Second, ca.nodeTLS("client"))
			if conn != nil {
				_ = conn.Close()
			}
			if tc.wantOK != (err == nil) {
				t.Fatalf("dial: err %v, want success %v", err, tc.wantOK)
			}
			if err != nil && !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("dial error %q does not name the certificate problem", err)
			}
		})
	}
}

// A node with TLS and one without cannot talk, either way round: a join
// sent across that mismatch fails and the membership does not change.
func TestTLSMixedClusterRefused(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	for _, tc := range []struct {
		name      string
		serverTLS bool
	}{
		{"plain client, TLS node", true},
		{"TLS client, plain node", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tweak func(*Config)
			client := newRPCClient(ca.nodeTLS("client"))
			if tc.serverTLS {
				tweak = withTLS(ca)
				client = newRPCClient(nil)
			}
			defer client.close()
			c := startCluster(t, 1, bootJoin, tweak)
			err := client.join(testCtx(t, 5*time.Second), c.node(0).Addr(), "n9", "127.0.0.1:1", false, true)
			if err == nil {
				t.Fatal("join across a TLS mismatch succeeded")
			}
			servers, err := c.node(0).Servers()
			if err != nil || len(servers) != 1 {
				t.Fatalf("servers = %v (%v), want only the node itself", servers, err)
			}
		})
	}
}

// postRaw sends one cluster RPC the way an outsider would: its own dial,
// optional TLS with the given client config, the 'C' protocol byte, HTTP.
func postRaw(t *testing.T, addr, path string, body []byte, clientTLS *tls.Config) (*rpcReply, error) {
	t.Helper()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, network, a)
			if err != nil {
				return nil, err
			}
			if clientTLS != nil {
				tc := tls.Client(conn, clientTLS)
				if err := tc.HandshakeContext(ctx); err != nil {
					_ = conn.Close()
					return nil, fmt.Errorf("handshake: %w", err)
				}
				conn = tc
			}
			if _, err := conn.Write([]byte{protoRPC}); err != nil {
				_ = conn.Close()
				return nil, err
			}
			return conn, nil
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	ctx := testCtx(t, 10*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var reply rpcReply
	if err := json.NewDecoder(resp.Body).Decode(&reply); err != nil {
		return nil, fmt.Errorf("decode reply (status %d): %w", resp.StatusCode, err)
	}
	return &reply, nil
}

func ptr[T any](v T) *T { return &v }
