#include "textflag.h"

// func cpuid(leaf, sub uint32) (a, b, c, d uint32)
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL leaf+0(FP), AX
	MOVL sub+4(FP), CX
	CPUID
	MOVL AX, a+8(FP)
	MOVL BX, b+12(FP)
	MOVL CX, c+16(FP)
	MOVL DX, d+20(FP)
	RET

// func flushLines(p, n uintptr, kind int)
TEXT ·flushLines(SB), NOSPLIT, $0-24
	MOVQ p+0(FP), AX
	MOVQ n+8(FP), CX
	MOVQ kind+16(FP), DX
	CMPQ DX, $3
	JEQ clwb
	CMPQ DX, $2
	JEQ clflushopt
clflush:
	TESTQ CX, CX
	JZ done
	CLFLUSH (AX)
	ADDQ $64, AX
	DECQ CX
	JMP clflush
clflushopt:
	TESTQ CX, CX
	JZ done
	CLFLUSHOPT (AX)
	ADDQ $64, AX
	DECQ CX
	JMP clflushopt
clwb:
	TESTQ CX, CX
	JZ done
	CLWB (AX)
	ADDQ $64, AX
	DECQ CX
	JMP clwb
done:
	SFENCE
	RET
