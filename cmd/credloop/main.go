// Command credloop is a hardware-in-the-loop test and simulation harness
// for the credential lifecycle of IoT devices. See README.md.
package main

import "github.com/credloop/credloop/internal/cli"

func main() { cli.Main() }
