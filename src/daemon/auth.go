package daemon

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/dpf-router/dpf/src/config"
	"github.com/dpf-router/dpf/src/server"
	"github.com/dpf-router/dpf/src/store"
)

// authSaver remembers which version of the server's replay state (see
// server.Server.AuthSeqs) is in the store.
type authSaver struct {
	mu    sync.Mutex
	saved uint64 // guarded by mu
}

// serverAuth converts the configuration's authentication mode and keys to
// the server's. The configuration parser has checked them.
func serverAuth(cfg *config.Config) (server.AuthMode, []server.Key) {
	mode := server.AuthOff
	if cfg.Auth != "" {
		m, err := server.ParseAuthMode(cfg.Auth)
		if err != nil {
			// Fail closed on a value the parser should have refused.
			m = server.AuthRequired
		}
		mode = m
	}
	keys := make([]server.Key, 0, len(cfg.Keys))
	for _, k := range cfg.Keys {
		keys = append(keys, server.Key{Name: k.Name, Secret: k.Secret, Sources: k.Addresses})
	}
	return mode, keys
}

// applyAuth gives the server the authentication mode and keys of cfg
// (after a reload).
func (d *Daemon) applyAuth(cfg *config.Config) error {
	mode, keys := serverAuth(cfg)
	if err := d.srv.SetAuth(mode, keys); err != nil {
		return err
	}
	d.log.Info("authentication", "mode", mode.String(), "keys", len(keys))
	return nil
}

// saveAuthSeqs writes the server's replay state (the highest sequence
// number accepted per key) to the store if it changed since the last save.
// It is called once per checkpoint interval and at shutdown, so that a
// restart does not reopen captured requests; see server/auth.go for what a
// crash between saves leaves open.
func (d *Daemon) saveAuthSeqs() {
	seqs, version := d.srv.AuthSeqs()
	d.auth.mu.Lock()
	defer d.auth.mu.Unlock()
	if version == d.auth.saved {
		return
	}
	if err := d.store.SaveAuthSeqs(seqs); err != nil {
		d.log.Warn("saving authentication sequence numbers", "err", err)
		return
	}
	d.auth.saved = version
}

// loadAuthSeqs reads the replay state saved by the previous run. When it
// cannot be read and authentication is on, dpfd does not start: accepting
// requests without it would let captured ones be replayed. With
// authentication off it only warns; the state starts empty.
func loadAuthSeqs(st *store.Store, mode server.AuthMode, log *slog.Logger) (map[[8]byte]uint64, error) {
	seqs, err := st.LoadAuthSeqs()
	if err == nil {
		return seqs, nil
	}
	if mode != server.AuthOff {
		return nil, fmt.Errorf("loading the authentication replay state (option auth '%s'): %w", mode, err)
	}
	log.Warn("authentication replay state unreadable; starting without it", "err", err)
	return nil, nil
}
