package bench

import (
	"errors"
	"fmt"
	"os"

	"github.com/credloop/credloop/cloud"
)

// EmbeddedCloud starts the cloud a run measures when there is no
// external target. Its CA and registry live in a temporary directory, as
// `credloop cloud --dir` keeps them: a SQLite file in WAL mode, where
// reads go through a pool of connections in parallel with the writer.
// (An in-memory registry has exactly one connection, so every query of
// every handshake would wait for every other: a bottleneck no deployment
// has.) o.Dir, when set, is used instead of a temporary directory and
// kept. The returned func closes the cloud and removes the temporary
// directory.
func EmbeddedCloud(o cloud.Options) (*cloud.Cloud, func() error, error) {
	tmp := ""
	if o.Dir == "" && o.Registry == nil {
		d, err := os.MkdirTemp("", "credloop-bench-")
		if err != nil {
			return nil, nil, fmt.Errorf("bench: embedded cloud: %w", err)
		}
		tmp, o.Dir = d, d
	}
	c, err := cloud.New(o)
	if err != nil {
		if tmp != "" {
			_ = os.RemoveAll(tmp)
		}
		return nil, nil, fmt.Errorf("bench: embedded cloud: %w", err)
	}
	return c, func() error {
		err := c.Close()
		if tmp != "" {
			err = errors.Join(err, os.RemoveAll(tmp))
		}
		return err
	}, nil
}
