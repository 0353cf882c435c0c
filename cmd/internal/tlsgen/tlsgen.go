// Package tlsgen creates the cluster CA and the node certificates that
// control nodes use for mutual TLS on the Raft/RPC port (`sandboxd tls`).
// Keys are ECDSA P-256; node certificates carry the hosts peers dial as
// SANs and both the serverAuth and clientAuth key usages, since every node
// is both ends of a connection.
package tlsgen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Default validity periods.
const (
	DefaultCADays   = 3650
	DefaultCertDays = 365
	// backdate covers clock skew between the machine that signs and the nodes.
	backdate = 5 * time.Minute
)

// File names written into the output directory.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

// CertOptions describes one node certificate.
type CertOptions struct {
	CACert, CAKey string   // PEM files of the cluster CA
	Name          string   // common name, also the file name: <Name>.pem and <Name>-key.pem
	Hosts         []string // DNS names and IPs peers use to dial the node (SANs)
	Dir           string   // output directory
	Days          int      // validity (DefaultCertDays when 0)
}

// CreateCA writes a new self-signed cluster CA (ca.pem, ca-key.pem) into
// dir and returns their paths. Existing files are never overwritten.
func CreateCA(dir string, days int, now time.Time) (certPath, keyPath string, err error) {
	if days == 0 {
		days = DefaultCADays
	}
	if days < 0 {
		return "", "", fmt.Errorf("days must be positive, got %d", days)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Cloud Sandbox cluster CA", Organization: []string{"cloud-sandbox"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.AddDate(0, 0, days),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// The CA signs node certificates only, never another CA.
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", fmt.Errorf("sign CA certificate: %w", err)
	}
	return writePair(dir, CACertFile, CAKeyFile, der, key)
}

// CreateCert writes a node certificate and key signed by the CA into
// o.Dir and returns their paths. Existing files are never overwritten.
func CreateCert(o CertOptions, now time.Time) (certPath, keyPath string, err error) {
	if o.Days == 0 {
		o.Days = DefaultCertDays
	}
	var errs []error
	if o.Name == "" || strings.ContainsAny(o.Name, `/\`) || o.Name != filepath.Base(o.Name) {
		errs = append(errs, fmt.Errorf("name %q: want a plain name such as node1", o.Name))
	}
	if len(o.Hosts) == 0 {
		errs = append(errs, errors.New("hosts: list every DNS name and IP that peers use to reach the node"))
	}
	if o.Days < 0 {
		errs = append(errs, fmt.Errorf("days must be positive, got %d", o.Days))
	}
	if o.CACert == "" || o.CAKey == "" {
		errs = append(errs, errors.New("the CA certificate and key are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return "", "", err
	}
	ca, caKey, err := loadCA(o.CACert, o.CAKey)
	if err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: o.Name, Organization: []string{"cloud-sandbox"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.AddDate(0, 0, o.Days),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range o.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter // a certificate outliving its CA would fail verification anyway
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return "", "", fmt.Errorf("sign certificate for %s: %w", o.Name, err)
	}
	return writePair(o.Dir, o.Name+".pem", o.Name+"-key.pem", der, key)
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	return s, nil
}

func loadCA(certFile, keyFile string) (*x509.Certificate, any, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, fmt.Errorf("read CA certificate: %w", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("CA certificate %s: no PEM certificate", certFile)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse CA certificate %s: %w", certFile, err)
	}
	if !ca.IsCA {
		return nil, nil, fmt.Errorf("%s is not a CA certificate", certFile)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("read CA key: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, fmt.Errorf("CA key %s: no PEM block", keyFile)
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		if key, err = x509.ParseECPrivateKey(kb.Bytes); err != nil {
			return nil, nil, fmt.Errorf("parse CA key %s: %w", keyFile, err)
		}
	}
	return ca, key, nil
}

// writePair writes the certificate (0644) and key (0600) into dir, refusing
// to replace existing files: losing a CA key cannot be undone.
func writePair(dir, certName, keyName string, der []byte, key *ecdsa.PrivateKey) (string, string, error) {
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("create %s: %w", dir, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("encode key: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, certName), filepath.Join(dir, keyName)
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Stat(p); err == nil {
			return "", "", fmt.Errorf("%s already exists: not overwriting it", p)
		}
	}
	if err := writeNew(keyPath, 0o600, &pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}); err != nil {
		return "", "", err
	}
	if err := writeNew(certPath, 0o644, &pem.Block{Type: "CERTIFICATE", Bytes: der}); err != nil {
		_ = os.Remove(keyPath)
		return "", "", err
	}
	return certPath, keyPath, nil
}

func writeNew(path string, mode os.FileMode, b *pem.Block) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := pem.Encode(f, b); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
