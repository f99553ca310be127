// Package tlsconf builds the server TLS configuration of idgen listeners
// (HTTP server, metrics, Lambda-less deployments) with certificate reload.
//
// Invariants: TLS 1.2 is the minimum and only AEAD, forward-secret cipher
// suites are offered for 1.2 (1.3 suites are fixed by Go); a reload swaps the
// certificate for new handshakes only, so open connections are not dropped;
// a reload that fails keeps the certificate in use and reports the error.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// ErrConfig means the files do not make a usable TLS configuration.
var ErrConfig = errors.New("tlsconf: bad configuration")

// Config names the PEM files; the zero value is not usable (CertFile and
// KeyFile are required).
type Config struct {
	CertFile, KeyFile string
	// ClientCAFile, when set, requires and verifies client certificates
	// (mTLS between services and the load balancer).
	ClientCAFile string
}

// Reloader serves the current certificate and reloads it on demand.
type Reloader struct {
	cfg Config

	mu      sync.RWMutex
	cert    *tls.Certificate
	modTime time.Time
	lastErr error
}

// New loads the certificate once.
func New(cfg Config) (*Reloader, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, fmt.Errorf("%w: certificate and key files are required", ErrConfig)
	}
	r := &Reloader{cfg: cfg}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files again; on error the previous certificate stays.
func (r *Reloader) Reload() error {
	cert, err := tls.LoadX509KeyPair(r.cfg.CertFile, r.cfg.KeyFile)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.lastErr = fmt.Errorf("%w: %w", ErrConfig, err)
		return r.lastErr
	}
	r.cert, r.lastErr = &cert, nil
	if st, err := os.Stat(r.cfg.CertFile); err == nil {
		r.modTime = st.ModTime()
	}
	return nil
}

// ReloadIfChanged reloads when the certificate file's modification time
// moved; it reports whether it reloaded.
func (r *Reloader) ReloadIfChanged() (bool, error) {
	st, err := os.Stat(r.cfg.CertFile)
	if err != nil {
		return false, err
	}
	r.mu.RLock()
	same := st.ModTime().Equal(r.modTime)
	r.mu.RUnlock()
	if same {
		return false, nil
	}
	return true, r.Reload()
}

// Certificate returns the certificate in use (for tests and /health).
func (r *Reloader) Certificate() *tls.Certificate {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cert
}

// ServerConfig returns the listener's tls.Config.
func (r *Reloader) ServerConfig() (*tls.Config, error) {
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.Certificate(), nil },
		NextProtos:     []string{"http/1.1"},
	}
	if r.cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(r.cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: no certificate in %s", ErrConfig, r.cfg.ClientCAFile)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// Watch reloads the certificate on SIGHUP and, every interval, when its
// file changed, logging each reload and each failure (the previous
// certificate stays in use). stop ends the watch.
func (r *Reloader) Watch(every time.Duration, log *zap.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			var (
				changed bool
				err     error
			)
			select {
			case <-done:
				return
			case <-hup:
				changed, err = true, r.Reload()
			case <-t.C:
				changed, err = r.ReloadIfChanged()
			}
			if err != nil {
				log.Error("TLS certificate reload failed; serving the previous certificate", zap.Error(err))
			} else if changed {
				log.Info("TLS certificate reloaded", zap.String("cert", r.cfg.CertFile))
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
		<-finished
	}
}
