package main

import (
	"crypto/tls"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/platform/tlsconf"
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
	return tls.NewListener(ln, cfg), r.Watch(certCheckEvery, log), nil
}
