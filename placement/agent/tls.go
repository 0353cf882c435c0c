package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// An agent on TCP (Nomad) serves TLS 1.3 with a certificate made for that
// one sandbox when it is placed; the control plane records the
// certificate's SHA-256 in the sandbox's placement (replicated through
// Raft, so every control node has it) and accepts no other certificate.
// The pin is stronger than a CA here: nothing but that sandbox's key is
// trusted, and there is no CA key to guard. The bearer secret still
// authenticates the control plane to the agent.
//
// The key reaches the agent as a file beside the bearer secret (or in the
// environment: kept from execs, but /proc/1/environ shows it to any process
// of the agent's uid), readable by the sandbox's uid, which is also the uid
// of the user's code: the owner of a sandbox can read its key and secret.
// It protects the channel to that one sandbox, which the owner may use
// anyway; what it stops is anyone else on the path between the control
// plane and the Nomad client reading or changing that traffic.

// Default names of the agent's TLS files, beside its secret file.
const (
	TLSCertFile = "agent-cert.pem"
	TLSKeyFile  = "agent-key.pem"
)

// ErrCertMismatch is a TLS agent whose certificate is not the one recorded
// for the sandbox, or a client with no certificate recorded to compare.
var ErrCertMismatch = errors.New("agent certificate does not match the recorded fingerprint")

// TLSIdentity is a sandbox agent's certificate and private key in PEM and
// the hex SHA-256 of the certificate (DER), which the control plane pins.
type TLSIdentity struct {
	CertPEM []byte
	KeyPEM  []byte
	SHA256  string
}

// NewTLSIdentity makes a fresh ECDSA P-256 key and a self-signed
// certificate for it naming name, valid from an hour ago (clock skew)
// for validFor. Clients pin the certificate and ignore its dates and
// names; the dates only tell a reader how long the key was meant to live.
func NewTLSIdentity(name string, validFor time.Duration) (TLSIdentity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return TLSIdentity{}, fmt.Errorf("agent tls: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return TLSIdentity{}, fmt.Errorf("agent tls: serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return TLSIdentity{}, fmt.Errorf("agent tls: certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return TLSIdentity{}, fmt.Errorf("agent tls: encode key: %w", err)
	}
	sum := sha256.Sum256(der)
	return TLSIdentity{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		SHA256:  hex.EncodeToString(sum[:]),
	}, nil
}

// CertSHA256 is the hex SHA-256 of the first certificate in certPEM.
func CertSHA256(certPEM []byte) (string, error) {
	for rest := certPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return "", errors.New("agent tls: no CERTIFICATE block in PEM")
		}
		if b.Type == "CERTIFICATE" {
			sum := sha256.Sum256(b.Bytes)
			return hex.EncodeToString(sum[:]), nil
		}
	}
}

// ServerTLSConfig is what an agent serves TLS with: TLS 1.3 only, HTTP/1.1,
// the one certificate.
func ServerTLSConfig(certPEM, keyPEM []byte) (*tls.Config, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("agent tls: certificate and key: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"http/1.1"},
	}, nil
}

// pinnedTLSConfig accepts exactly the certificate whose SHA-256 is pin
// (hex; empty accepts none). Chain and name checks are off because the pin
// replaces them: the agent's certificate is self-signed and only its hash
// is trusted.
func pinnedTLSConfig(pin string) *tls.Config {
	want := strings.ToLower(pin)
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{"http/1.1"},
		InsecureSkipVerify: true, // the pin below is the verification
		VerifyConnection: func(cs tls.ConnectionState) error {
			if want == "" {
				return fmt.Errorf("%w: none recorded for this https endpoint", ErrCertMismatch)
			}
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: agent sent no certificate", ErrCertMismatch)
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			got := hex.EncodeToString(sum[:])
			if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
				return fmt.Errorf("%w: agent presented sha256 %s, want %s", ErrCertMismatch, got, want)
			}
			return nil
		},
	}
}
