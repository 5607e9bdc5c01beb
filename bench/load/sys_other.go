//go:build !linux

package main

import "syscall"

// childAttr has nothing to add off Linux (where the harness cannot read
// /proc anyway).
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

// fsType is not known off Linux.
func fsType(string) string { return "unknown" }
