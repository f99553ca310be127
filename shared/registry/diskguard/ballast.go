package diskguard

import (
	"errors"
	"os"

	"go.uber.org/zap"
)

// ballastSize returns the bytes the ballast file at path holds on disk, or
// 0 when there is none.
func ballastSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return 0
	}
	return fi.Size()
}

// layLocked creates the ballast file of size bytes, all of them allocated
// (never sparse). A failure leaves no file and is logged: the store runs
// without a ballast until the next try. g.mu is held.
func (g *Guard) layLocked(size int64) {
	if g.ballast == "" {
		return
	}
	err := allocate(g.ballast, size)
	if err != nil {
		_ = os.Remove(g.ballast)
		g.st.BallastBytes = 0
		g.cfg.Logger.Warn("cannot lay the disk ballast; running without it", zap.String("path", g.ballast), zap.Error(err))
		return
	}
	g.st.BallastBytes = size
	g.cfg.Logger.Info("disk ballast laid", zap.String("path", g.ballast), zap.Int64("bytes", size))
}

// releaseLocked deletes the ballast file, giving its space to the store.
// g.mu is held.
func (g *Guard) releaseLocked(why string) {
	if g.ballast == "" {
		return
	}
	err := os.Remove(g.ballast)
	switch {
	case err == nil:
		g.cfg.Logger.Warn("disk ballast released", zap.String("path", g.ballast), zap.Int64("bytes", g.st.BallastBytes), zap.String("why", why))
	case !errors.Is(err, os.ErrNotExist):
		g.cfg.Logger.Error("cannot release the disk ballast", zap.String("path", g.ballast), zap.Error(err))
		return
	}
	g.st.BallastBytes = 0
}

// allocate creates path with size bytes allocated on disk (fill) and
// synced.
func allocate(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = fill(f, size)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// writeZeros allocates by writing: the fallback where fallocate is missing.
func writeZeros(f *os.File, size int64) error {
	buf := make([]byte, min(size, 1<<20))
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := f.Write(buf[:min(int64(len(buf)), size-off)]); err != nil {
			return err
		}
	}
	return nil
}
