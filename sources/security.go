package sources

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// Security configures how tariff authenticates to Kafka and encrypts the
// connection. The zero value is plaintext without authentication, as on a
// local test broker.
type Security struct {
	TLS  TLSConfig  `yaml:"tls"`
	SASL SASLConfig `yaml:"sasl"`
}

// TLSConfig enables TLS to the brokers.
type TLSConfig struct {
	// Enabled turns TLS on. Default false.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the CAs to trust. Default: the system pool.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and key, for
	// brokers that authenticate clients by certificate. Default none.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the broker's certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify disables certificate checks. For tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// SASLConfig enables SASL authentication.
type SASLConfig struct {
	// Mechanism is "", "plain", "scram-sha-256" or "scram-sha-512".
	// Default "" (none).
	Mechanism string `yaml:"mechanism"`
	// Username to authenticate as.
	Username string `yaml:"username"`
	// Password; better given by environment (TARIFF_KAFKA_SASL_PASSWORD) or
	// PasswordFile than written here. Never logged.
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// Validate reports every bad field at once.
func (s *Security) Validate() error {
	var errs []error
	switch s.SASL.Mechanism {
	case "":
	case "plain", "scram-sha-256", "scram-sha-512":
		if s.SASL.Username == "" {
			errs = append(errs, fmt.Errorf("kafka.security.sasl.username: required with mechanism %s", s.SASL.Mechanism))
		}
		if s.SASL.Password == "" && s.SASL.PasswordFile == "" {
			errs = append(errs, errors.New("kafka.security.sasl: a password is required (password_file, or TARIFF_KAFKA_SASL_PASSWORD)"))
		}
	default:
		errs = append(errs, fmt.Errorf("kafka.security.sasl.mechanism: %q: expected plain, scram-sha-256 or scram-sha-512", s.SASL.Mechanism))
	}
	if (s.TLS.CertFile == "") != (s.TLS.KeyFile == "") {
		errs = append(errs, errors.New("kafka.security.tls: cert_file and key_file go together"))
	}
	if !s.TLS.Enabled && (s.TLS.CAFile != "" || s.TLS.CertFile != "") {
		errs = append(errs, errors.New("kafka.security.tls: files are set but enabled is false"))
	}
	return errors.Join(errs...)
}

func (s *Security) tlsConfig() (*tls.Config, error) {
	if !s.TLS.Enabled {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: s.TLS.ServerName, InsecureSkipVerify: s.TLS.InsecureSkipVerify}
	if s.TLS.CAFile != "" {
		pem, err := os.ReadFile(s.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.security.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.security.tls.ca_file %s: no PEM certificate found", s.TLS.CAFile)
		}
		c.RootCAs = pool
	}
	if s.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.TLS.CertFile, s.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.security.tls: client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

func (s *Security) mechanism() (sasl.Mechanism, error) {
	if s.SASL.Mechanism == "" {
		return nil, nil
	}
	pw := s.SASL.Password
	if pw == "" && s.SASL.PasswordFile != "" {
		b, err := os.ReadFile(s.SASL.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.security.sasl.password_file: %w", err)
		}
		pw = string(trimNewline(b))
	}
	switch s.SASL.Mechanism {
	case "plain":
		return plain.Mechanism{Username: s.SASL.Username, Password: pw}, nil
	case "scram-sha-256":
		return scram.Mechanism(scram.SHA256, s.SASL.Username, pw)
	case "scram-sha-512":
		return scram.Mechanism(scram.SHA512, s.SASL.Username, pw)
	}
	return nil, fmt.Errorf("kafka.security.sasl.mechanism: %q: expected plain, scram-sha-256 or scram-sha-512", s.SASL.Mechanism)
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// Dialer returns the dialer for readers and consumer groups (nil: the
// kafka-go default, plaintext).
func (s *Security) Dialer() (*kafka.Dialer, error) {
	t, err := s.tlsConfig()
	if err != nil {
		return nil, err
	}
	m, err := s.mechanism()
	if err != nil {
		return nil, err
	}
	if t == nil && m == nil {
		return nil, nil
	}
	return &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: t, SASLMechanism: m}, nil
}

// Transport returns the transport for clients and writers (nil: the
// kafka-go default, plaintext).
func (s *Security) Transport() (*kafka.Transport, error) {
	t, err := s.tlsConfig()
	if err != nil {
		return nil, err
	}
	m, err := s.mechanism()
	if err != nil {
		return nil, err
	}
	if t == nil && m == nil {
		return nil, nil
	}
	return &kafka.Transport{TLS: t, SASL: m, DialTimeout: 10 * time.Second}, nil
}

// RoundTripper returns Transport as the interface kafka.Client and
// kafka.Writer take, keeping their default when it is nil (a nil
// *Transport in a non-nil interface would not be).
func (s *Security) RoundTripper() (kafka.RoundTripper, error) {
	t, err := s.Transport()
	if err != nil || t == nil {
		return nil, err
	}
	return t, nil
}
