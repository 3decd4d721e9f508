package dax

// cpuid executes CPUID with the given leaf and sub-leaf.
func cpuid(leaf, sub uint32) (a, b, c, d uint32)

// flushLines writes back n cache lines from p with instruction kind, then
// fences (SFENCE).
func flushLines(p, n uintptr, kind int)

// cpuFlushKind finds the best write-back instruction: CPUID leaf 7 EBX
// bit 24 (CLWB) and bit 23 (CLFLUSHOPT); CLFLUSH is in every x86-64 CPU.
func cpuFlushKind() int {
	if max, _, _, _ := cpuid(0, 0); max >= 7 {
		_, b, _, _ := cpuid(7, 0)
		switch {
		case b&(1<<24) != 0:
			return flushCLWB
		case b&(1<<23) != 0:
			return flushCLFLUSHOPT
		}
	}
	return flushCLFLUSH
}
