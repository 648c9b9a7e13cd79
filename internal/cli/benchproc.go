package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/credloop/credloop/bench"
)

// startBenchServer starts this program as `credloop cloud` in a child
// process for --server-proc and bench side-by-side.
func startBenchServer(ctx context.Context, env *Env) (*bench.ServerProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("server process: cannot find the credloop executable: %w", err)
	}
	fmt.Fprintln(env.Stderr, "starting the server process (credloop cloud)...")
	sp, err := bench.StartServerProc(ctx, bench.ServerProcOptions{Exe: exe})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(env.Stderr, "server process: pid %d, coaps %s, mqtts %s\n", sp.Pid(), sp.Addrs.CoAPS, sp.Addrs.MQTTS)
	return sp, nil
}

// fleetOutput is bench fleet's JSON: the fleet result and, with
// --server-proc, the server process's resident memory (VmRSS before the
// fleet connects, its peak VmHWM while connected, and the peak growth per
// connected device).
type fleetOutput struct {
	bench.FleetResult
	ServerRSSBefore       uint64  `json:"server_rss_before_bytes,omitempty"`
	ServerRSSPeak         uint64  `json:"server_rss_peak_bytes,omitempty"`
	ServerRSSKiBPerDevice float64 `json:"server_rss_kib_per_device,omitempty"`
	// ServerPeakSinceStart: the peak could not be reset before the fleet
	// and counts from the server's start.
	ServerPeakSinceStart bool `json:"server_peak_since_start,omitempty"`
}

// serverMemory is the server process's memory before the fleet.
type serverMemory struct {
	before uint64
	reset  bool
}

// startServerMemory resets the server's peak resident set and reads the
// current one.
func startServerMemory(sp *bench.ServerProc) (serverMemory, error) {
	m := serverMemory{reset: sp.ResetPeak() == nil}
	rss, _, err := sp.Memory()
	if err != nil {
		return m, err
	}
	m.before = rss
	return m, nil
}

// finish reads the server's peak resident set (the fleet is closed by
// now; the peak was with it connected) into out.
func (m serverMemory) finish(sp *bench.ServerProc, connected int, out *fleetOutput) error {
	_, peak, err := sp.Memory()
	if err != nil {
		return err
	}
	out.ServerRSSBefore, out.ServerRSSPeak, out.ServerPeakSinceStart = m.before, peak, !m.reset
	if connected > 0 && peak > m.before {
		out.ServerRSSKiBPerDevice = float64(peak-m.before) / 1024 / float64(connected)
	}
	return nil
}

// serverLine is the one-line summary of the server's memory.
func (o fleetOutput) serverLine() string {
	since := ""
	if o.ServerPeakSinceStart {
		since = " (peak since the server started)"
	}
	return fmt.Sprintf("server process: VmRSS %.1f MiB before the fleet, peak %.1f MiB with it connected%s: %.1f KiB/device",
		float64(o.ServerRSSBefore)/(1<<20), float64(o.ServerRSSPeak)/(1<<20), since, o.ServerRSSKiBPerDevice)
}
