package lease

import "time"

// SetCheckpointInterval replaces Config.CheckpointInterval (after a
// configuration reload); 0 or less means the default. Run takes it at
// once: the next checkpoint is due d after the last one, now if that is
// past.
func (m *Manager) SetCheckpointInterval(d time.Duration) {
	if d <= 0 {
		d = DefaultCheckpointInterval
	}
	m.mu.Lock()
	m.cfg.CheckpointInterval = d
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// checkpointInterval returns the current checkpoint interval.
func (m *Manager) checkpointInterval() time.Duration {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.cfg.CheckpointInterval
}
