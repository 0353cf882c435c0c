package tlsgen

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/cluster"
	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// The command's output is what the cluster accepts: three nodes with
// certificates from `tls ca create` and `tls cert create` elect a leader and
// replicate a write a follower forwarded.
func TestGeneratedCertificatesFormACluster(t *testing.T) {
	dir := t.TempDir()
	run(t, "ca", "create", "-dir", dir)
	caCert, caKey := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)

	const size = 3
	var peers []cluster.Peer
	for i := range size {
		peers = append(peers, cluster.Peer{ID: fmt.Sprintf("node%d", i), Addr: freeAddr(t)})
	}
	nodes := make([]*cluster.Node, size)
	for i, p := range peers {
		run(t, "cert", "create", "-ca-cert", caCert, "-ca-key", caKey, "-name", p.ID, "-hosts", "127.0.0.1,"+p.ID+".local", "-dir", dir)
		tl, err := cluster.LoadTLS(caCert, filepath.Join(dir, p.ID+".pem"), filepath.Join(dir, p.ID+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		n, err := cluster.Open(cluster.Config{ID: p.ID, DataDir: filepath.Join(dir, p.ID), BindAddr: p.Addr,
			Peers: peers, TLS: tl, Logger: slog.New(slog.DiscardHandler)}, fsm.New(fsm.WithLogger(slog.New(slog.DiscardHandler))))
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = n
		t.Cleanup(func() { _ = n.Close() })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var follower *cluster.Node
	for _, n := range nodes {
		if err := n.WaitForLeader(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		if !n.IsLeader() {
			follower = n
		}
	}
	if _, err := follower.Apply(ctx, &fsm.SetPool{Pool: fsm.PoolConfig{MaxSize: 3, Image: "img"}}); err != nil {
		t.Fatalf("apply through a follower over TLS: %v", err)
	}
	for _, n := range nodes {
		if err := n.ConsistentRead(ctx); err != nil {
			t.Fatal(err)
		}
		if got := n.FSM().Pool().MaxSize; got != 3 {
			t.Errorf("node %s pool max = %d, want 3", n.ID(), got)
		}
	}
}

// A node certificate is ECDSA P-256, signed by the CA, names the given
// hosts and is good for both ends of a connection; its key is private.
func TestCertificateContents(t *testing.T) {
	dir := t.TempDir()
	run(t, "ca", "create", "-dir", dir, "-days", "30")
	run(t, "cert", "create", "-ca-cert", filepath.Join(dir, CACertFile), "-ca-key", filepath.Join(dir, CAKeyFile),
		"-name", "n1", "-hosts", "10.0.0.1, n1.local", "-dir", dir, "-days", "400")
	ca, cert := readCert(t, filepath.Join(dir, CACertFile)), readCert(t, filepath.Join(dir, "n1.pem"))

	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "n1.local", KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("verify for %v: %v", usage, err)
		}
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", cert.PublicKey)
	}
	if !slices.Equal(cert.DNSNames, []string{"n1.local"}) || len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")) {
		t.Errorf("SANs %v %v, want n1.local and 10.0.0.1", cert.DNSNames, cert.IPAddresses)
	}
	if !cert.NotAfter.Equal(ca.NotAfter) {
		t.Errorf("certificate expires %s, after its CA (%s)", cert.NotAfter, ca.NotAfter)
	}
	for _, f := range []string{CAKeyFile, "n1-key.pem"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", f, st.Mode().Perm(), err)
		}
	}
}

func TestCommandErrors(t *testing.T) {
	dir := t.TempDir()
	run(t, "ca", "create", "-dir", dir)
	ca, key := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", nil, "usage"},
		{"unknown subcommand", []string{"key", "create"}, "usage"},
		{"ca over an existing one", []string{"ca", "create", "-dir", dir}, "already exists"},
		{"cert without hosts", []string{"cert", "create", "-ca-cert", ca, "-ca-key", key, "-name", "n1", "-dir", dir}, "hosts"},
		{"cert without a name", []string{"cert", "create", "-ca-cert", ca, "-ca-key", key, "-hosts", "127.0.0.1", "-dir", dir}, "name"},
		{"cert with a path as name", []string{"cert", "create", "-ca-cert", ca, "-ca-key", key, "-name", "../x", "-hosts", "127.0.0.1", "-dir", dir}, "plain name"},
		{"CA certificate missing", []string{"cert", "create", "-ca-cert", filepath.Join(dir, "missing.pem"), "-ca-key", key, "-name", "n1", "-hosts", "h", "-dir", dir}, "read CA certificate"},
		{"stray argument", []string{"ca", "create", "-dir", dir, "extra"}, "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Main(tc.args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func run(t *testing.T, args ...string) {
	t.Helper()
	var out bytes.Buffer
	if err := Main(args, &out, io.Discard); err != nil {
		t.Fatalf("sandboxd tls %s: %v", strings.Join(args, " "), err)
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
