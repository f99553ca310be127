package main

import (
	"crypto/tls"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/idgen/idgen/cmd/idgen/internal/tlsconf"
)

// certCheckEvery is how often the certificate files are checked for change.
const certCheckEvery = 30 * time.Second

// tlsListener wraps ln in TLS (1.2+, optional mTLS) and reloads the
// certificate on SIGHUP and when its file changes; open connections keep the
// certificate they started with.
func tlsListener(ln net.Listener, c ServeConfig, log *zap.Logger) (net.Listener, func(), error) {
	r, err := tlsconf.New(tlsconf.Config{CertFile: c.TLSCert, KeyFile: c.TLSKey, ClientCAFile: c.TLSClientCA})
	if err != nil {
		return nil, nil, err
	}
	cfg, err := r.ServerConfig()
	if err != nil {
		return nil, nil, err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(certCheckEvery)
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
				log.Info("TLS certificate reloaded", zap.String("cert", c.TLSCert))
			}
		}
	}()
	stop := func() {
		signal.Stop(hup)
		close(done)
	}
	return tls.NewListener(ln, cfg), stop, nil
}
