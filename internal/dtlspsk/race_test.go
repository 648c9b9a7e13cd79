//go:build race

package dtlspsk

const raceEnabled = true
