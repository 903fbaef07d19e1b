//! The TUN's flow-steering program: an eBPF socket filter that computes the stack's flow
//! hash ([`FlowSteering`]) for every packet the kernel sends into the TUN, so that the kernel
//! puts each TCP flow on the queue of the shard that owns it (`TUNSETSTEERINGEBPF`; the
//! kernel takes the program's result, as a `u16`, modulo the queue count).
//!
//! The program is straight-line code, emitted here instruction by instruction (661 of them,
//! of which a packet runs about 380 for IPv4 and 610 to 620 for IPv6: no loops, no maps, no
//! helpers), so that the crate needs neither a BPF compiler at build time nor a loader
//! library:
//! 1. Packet loads: the legacy `LD_ABS`/`LD_IND` instructions, which read big-endian fields
//!    at offsets from the network header (a TUN's packets have no link-layer header), and
//!    end the program with 0 if the packet is too short. What is not plain TCP (another
//!    protocol, an IPv4 fragment, IPv6 with extension headers other than one Hop-by-Hop
//!    Options header) goes to queue 0, where the stack keeps UDP and hands over anything
//!    else.
//! 2. The message words ([`flow_word`](crate::shard::flow_word)) go to the program's stack
//!    (the packet loads clobber registers R1 to R5): IPv6's five in slots 0 to 4, IPv4's
//!    two in slots 3 and 4, and the last block (the message length) in R9.
//! 3. SipHash-2-4 over them in registers R1 to R4 (v0 to v3), R5 the scratch register of the
//!    rotations: IPv6 absorbs its first three words, then both families share the tail
//!    that absorbs slots 3 and 4 and the last block and returns the result's low 16 bits.
//!    No jump closes a loop.
//!
//! Instruction encoding: `struct bpf_insn` of `linux/bpf.h` (opcode, destination and source
//! registers in one byte's low and high nibbles, a 16-bit offset, a 32-bit immediate).

use crate::shard::FlowSteering;

/// One eBPF instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Insn {
    code: u8,
    dst: u8,
    src: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    /// The 8 bytes the kernel reads (`struct bpf_insn`, little-endian bit fields).
    pub(super) fn encode(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.dst & 0x0f) | (self.src << 4);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

// Instruction classes, sizes, modes and operations (linux/bpf_common.h, linux/bpf.h).
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const STX: u8 = 0x03;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
const W: u8 = 0x00;
const H: u8 = 0x08;
const B: u8 = 0x10;
const DW: u8 = 0x18;
const IMM: u8 = 0x00;
const ABS: u8 = 0x20;
const IND: u8 = 0x40;
const MEM: u8 = 0x60;
const ADD: u8 = 0x00;
const OR: u8 = 0x40;
const AND: u8 = 0x50;
const LSH: u8 = 0x60;
const RSH: u8 = 0x70;
const XOR: u8 = 0xa0;
const MOV: u8 = 0xb0;
const K: u8 = 0x00;
const X: u8 = 0x08;
const JEQ: u8 = 0x10;
const JA: u8 = 0x00;
const JNE: u8 = 0x50;
const EXIT: u8 = 0x90;

/// Registers: R0 the return value and the packet loads' result, R1 to R5 scratch (and
/// clobbered by packet loads), R6 the context (the packet loads need it there), R10 the
/// read-only frame pointer.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const FP: u8 = 10;

/// Where a jump goes, resolved when the program is finished.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    Ipv4,
    Ipv6,
    /// IPv6's TCP header found, its offset in R8.
    Ipv6Tcp,
    Queue0,
    /// The hash's last two message words (stack slots 3 and 4) and its end.
    HashTail,
}

/// A program being emitted, with its jumps to patch once their labels are placed.
struct Asm {
    insns: Vec<Insn>,
    fixups: Vec<(usize, Label)>,
    labels: Vec<(Label, usize)>,
}

impl Asm {
    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            dst,
            src,
            off,
            imm,
        });
    }

    /// `dst op= imm`, 64-bit.
    fn alu_k(&mut self, op: u8, dst: u8, imm: i32) {
        self.op(ALU64 | op | K, dst, 0, 0, imm);
    }

    /// `dst op= src`, 64-bit.
    fn alu_x(&mut self, op: u8, dst: u8, src: u8) {
        self.op(ALU64 | op | X, dst, src, 0, 0);
    }

    /// `dst op= src` on the low 32 bits, the upper 32 cleared.
    fn alu32_x(&mut self, op: u8, dst: u8, src: u8) {
        self.op(ALU | op | X, dst, src, 0, 0);
    }

    /// `dst = imm`, a full 64-bit immediate (two instruction slots).
    fn ld_imm64(&mut self, dst: u8, imm: u64) {
        self.op(LD | DW | IMM, dst, 0, 0, imm as u32 as i32);
        self.op(0, 0, 0, 0, (imm >> 32) as u32 as i32);
    }

    /// `R0 = the big-endian field of `size` at `offset` from the network header`.
    fn ld_abs(&mut self, size: u8, offset: i32) {
        self.op(LD | ABS | size, 0, 0, 0, offset);
    }

    /// `R0 = the big-endian field of `size` at `reg + offset``.
    fn ld_ind(&mut self, size: u8, reg: u8, offset: i32) {
        self.op(LD | IND | size, 0, reg, 0, offset);
    }

    /// Stores `src` in the program's stack slot `slot` (8 bytes each, below the frame).
    fn store(&mut self, slot: i16, src: u8) {
        self.op(STX | MEM | DW, FP, src, -8 * (slot + 1), 0);
    }

    fn load(&mut self, dst: u8, slot: i16) {
        self.op(LDX | MEM | DW, dst, FP, -8 * (slot + 1), 0);
    }

    /// `if dst op imm goto label`.
    fn jump_k(&mut self, op: u8, dst: u8, imm: i32, label: Label) {
        self.fixups.push((self.insns.len(), label));
        self.op(JMP | op | K, dst, 0, 0, imm);
    }

    fn label(&mut self, label: Label) {
        self.labels.push((label, self.insns.len()));
    }

    fn exit(&mut self) {
        self.op(JMP | EXIT, 0, 0, 0, 0);
    }

    /// `dst = rotl(dst, bits)`, with R5 as scratch.
    fn rotl(&mut self, dst: u8, bits: i32) {
        self.alu_x(MOV, R5, dst);
        self.alu_k(RSH, R5, 64 - bits);
        self.alu_k(LSH, dst, bits);
        self.alu_x(OR, dst, R5);
    }

    /// Computes `flow_word(R7, R9)` (both zero-extended 32-bit values) into stack slot
    /// `slot`, using R0 and R1.
    fn flow_word(&mut self, slot: i16) {
        self.alu_x(MOV, R0, R7);
        self.alu_x(XOR, R0, R9);
        self.alu_k(LSH, R0, 32);
        self.alu32_x(MOV, R1, R7);
        self.alu32_x(ADD, R1, R9);
        self.alu_x(OR, R0, R1);
        self.store(slot, R0);
    }

    /// One SipRound on v0..v3 = R1..R4.
    fn sip_round(&mut self) {
        let (v0, v1, v2, v3) = (R1, R2, R3, R4);
        self.alu_x(ADD, v0, v1);
        self.rotl(v1, 13);
        self.alu_x(XOR, v1, v0);
        self.rotl(v0, 32);
        self.alu_x(ADD, v2, v3);
        self.rotl(v3, 16);
        self.alu_x(XOR, v3, v2);
        self.alu_x(ADD, v0, v3);
        self.rotl(v3, 21);
        self.alu_x(XOR, v3, v0);
        self.alu_x(ADD, v2, v1);
        self.rotl(v1, 17);
        self.alu_x(XOR, v1, v2);
        self.rotl(v2, 32);
    }

    /// SipHash-2-4's initial state for `key`, in v0..v3 = R1..R4.
    fn sip_init(&mut self, key: &[u8; 16]) {
        let k0 = u64::from_le_bytes(key[..8].try_into().expect("8 bytes"));
        let k1 = u64::from_le_bytes(key[8..].try_into().expect("8 bytes"));
        // "somepseudorandomlygeneratedbytes", as in `synack_core::isn::siphash24`.
        self.ld_imm64(R1, k0 ^ 0x736f_6d65_7073_6575);
        self.ld_imm64(R2, k1 ^ 0x646f_7261_6e64_6f6d);
        self.ld_imm64(R3, k0 ^ 0x6c79_6765_6e65_7261);
        self.ld_imm64(R4, k1 ^ 0x7465_6462_7974_6573);
    }

    /// Absorbs the message word in stack slot `slot`.
    fn absorb(&mut self, slot: i16) {
        self.load(R0, slot);
        self.compress();
    }

    /// SipHash-2-4's last block, held in R9 (no tail bytes: the message length in its top
    /// byte), and finalization; returns the hash's low 16 bits.
    fn sip_finish_and_exit(&mut self) {
        self.alu_x(MOV, R0, R9);
        self.compress();
        self.alu_k(XOR, R3, 0xff);
        for _ in 0..4 {
            self.sip_round();
        }
        self.alu_x(MOV, R0, R1);
        self.alu_x(XOR, R0, R2);
        self.alu_x(XOR, R0, R3);
        self.alu_x(XOR, R0, R4);
        self.alu_k(AND, R0, 0xffff);
        self.exit();
    }

    /// The last block of a message of `words` 64-bit words, into R9.
    fn sip_last_block(&mut self, words: u64) {
        self.ld_imm64(R9, ((8 * words) & 0xff) << 56);
    }

    /// `goto label`.
    fn jump(&mut self, label: Label) {
        self.fixups.push((self.insns.len(), label));
        self.op(JMP | JA, 0, 0, 0, 0);
    }

    /// Absorbs the message word in R0 with two SipRounds.
    fn compress(&mut self) {
        self.alu_x(XOR, R4, R0);
        self.sip_round();
        self.sip_round();
        self.alu_x(XOR, R1, R0);
    }

    /// The finished program, every jump resolved.
    fn finish(mut self) -> Vec<Insn> {
        for &(at, label) in &self.fixups {
            let (_, target) = *self
                .labels
                .iter()
                .find(|(l, _)| *l == label)
                .expect("every label used is placed");
            let off = target as isize - at as isize - 1;
            self.insns[at].off = i16::try_from(off).expect("a jump within the program");
        }
        self.insns
    }
}

/// TCP's protocol number (IPv4's protocol field, IPv6's next header).
const TCP: i32 = 6;
/// IPv6's Hop-by-Hop Options header (RFC 8200 §4.3), as a next header.
const HOP_BY_HOP: i32 = 0;

/// The steering program for `steering`'s key.
pub(super) fn program(steering: &FlowSteering) -> Vec<Insn> {
    let mut a = Asm {
        insns: Vec::new(),
        fixups: Vec::new(),
        labels: Vec::new(),
    };
    a.alu_x(MOV, R6, R1);
    a.ld_abs(B, 0);
    a.alu_x(MOV, R7, R0);
    a.alu_k(RSH, R7, 4);
    a.jump_k(JEQ, R7, 4, Label::Ipv4);
    a.jump_k(JEQ, R7, 6, Label::Ipv6);
    a.label(Label::Queue0);
    a.alu_k(MOV, R0, 0);
    a.exit();

    // IPv4 (RFC 791 §3.1): TCP, not a fragment; the ports after IHL words. Its two words go
    // in the last two slots, which the hash's shared tail absorbs.
    a.label(Label::Ipv4);
    a.alu_x(MOV, R8, R0);
    a.alu_k(AND, R8, 0x0f);
    a.alu_k(LSH, R8, 2);
    a.ld_abs(B, 9);
    a.jump_k(JNE, R0, TCP, Label::Queue0);
    a.ld_abs(H, 6);
    a.alu_k(AND, R0, 0x3fff);
    a.jump_k(JNE, R0, 0, Label::Queue0);
    a.ld_abs(W, 12);
    a.alu_x(MOV, R7, R0);
    a.ld_abs(W, 16);
    a.alu_x(MOV, R9, R0);
    a.flow_word(3);
    a.ld_ind(H, R8, 0);
    a.alu_x(MOV, R7, R0);
    a.ld_ind(H, R8, 2);
    a.alu_x(MOV, R9, R0);
    a.flow_word(4);
    a.sip_last_block(2);
    a.sip_init(steering.key());
    a.jump(Label::HashTail);

    // IPv6 (RFC 8200 §3): TCP right after the fixed header, or after a Hop-by-Hop Options
    // header (§4.3: next header 0, its length in 8-octet units past the first 8). The
    // kernel puts one on every IPv6 skb over 65535 bytes while it picks the queue (BIG
    // TCP's temporary jumbo option, `ip6_xmit`, removed only when the skb is segmented):
    // a TUN whose MTU lets two segments exceed that sees it on most bulk data. R8 is the
    // TCP header's offset; the addresses go in four words.
    a.label(Label::Ipv6);
    a.alu_k(MOV, R8, 40);
    a.ld_abs(B, 6);
    a.jump_k(JEQ, R0, TCP, Label::Ipv6Tcp);
    a.jump_k(JNE, R0, HOP_BY_HOP, Label::Queue0);
    a.ld_abs(B, 40);
    a.jump_k(JNE, R0, TCP, Label::Queue0);
    a.ld_abs(B, 41);
    a.alu_k(LSH, R0, 3);
    a.alu_k(ADD, R0, 48);
    a.alu_x(MOV, R8, R0);
    a.label(Label::Ipv6Tcp);
    for i in 0..4i16 {
        a.ld_abs(W, 8 + 4 * i32::from(i));
        a.alu_x(MOV, R7, R0);
        a.ld_abs(W, 24 + 4 * i32::from(i));
        a.alu_x(MOV, R9, R0);
        a.flow_word(i);
    }
    a.ld_ind(H, R8, 0);
    a.alu_x(MOV, R7, R0);
    a.ld_ind(H, R8, 2);
    a.alu_x(MOV, R9, R0);
    a.flow_word(4);
    a.sip_last_block(5);
    a.sip_init(steering.key());
    for slot in 0..3 {
        a.absorb(slot);
    }

    // Both: the last two words (IPv4's whole message), the last block, the result.
    a.label(Label::HashTail);
    a.absorb(3);
    a.absorb(4);
    a.sip_finish_and_exit();
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_struct_bpf_insn() {
        // r1 = r6 (BPF_ALU64 | BPF_MOV | BPF_X): dst 1 in the low nibble, src 6 in the high.
        let i = Insn {
            code: ALU64 | MOV | X,
            dst: R1,
            src: R6,
            off: -8,
            imm: 0x0102_0304,
        };
        assert_eq!(i.encode(), [0xbf, 0x61, 0xf8, 0xff, 0x04, 0x03, 0x02, 0x01]);
    }

    #[test]
    fn jumps_land_on_their_labels_and_the_program_fits() {
        let insns = program(&crate::shard::Flows::new(2).steering().clone());
        // Within the kernel's limit for a program an unprivileged user could load
        // (BPF_MAXINSNS, 4096 slots); it is 661 today.
        assert!(insns.len() <= 4096, "{} instructions", insns.len());
        for (at, i) in insns.iter().enumerate() {
            if i.code & 0x07 == JMP && i.code != JMP | EXIT {
                let target = at as isize + 1 + isize::from(i.off);
                assert!(target >= 0 && (target as usize) < insns.len() && target != at as isize);
            }
        }
        assert_eq!(insns.last().map(|i| i.code), Some(JMP | EXIT));
    }

    /// The kernel is the judge: its verifier loads the program, and `BPF_PROG_TEST_RUN`
    /// runs it on packets of every shape; on each, its result must be the queue
    /// [`FlowSteering::queue_of`] names (with 2^16 queues, the whole 16-bit hash), for both
    /// directions of a flow, and 0 for what it leaves to queue 0.
    #[cfg(feature = "netns")]
    #[test]
    fn the_kernel_runs_the_program_as_the_stack_hashes() {
        use std::net::{IpAddr, SocketAddr};
        use std::os::fd::AsRawFd;

        if !crate::netns::require_tun("the_kernel_runs_the_program_as_the_stack_hashes") {
            return;
        }
        let flows = crate::shard::Flows::new(1 << 16);
        let steering = flows.steering();
        let insns: Vec<[u8; 8]> = program(steering).into_iter().map(Insn::encode).collect();
        let prog = super::super::sys::load_socket_filter(&insns, "synack_test").expect("load");
        let run = |packet: &[u8]| {
            // BPF_PROG_TEST_RUN takes an Ethernet frame and starts the program after it.
            let mut frame = vec![0u8; 12];
            frame.extend_from_slice(if packet.first().is_some_and(|b| b >> 4 == 6) {
                &[0x86, 0xdd]
            } else {
                &[0x08, 0x00]
            });
            frame.extend_from_slice(packet);
            super::super::sys::test_run(prog.as_raw_fd(), &frame)
                .unwrap_or_else(|e| panic!("test run of {packet:02x?}: {e}")) as usize
        };
        // A fixed-seed generator: the same packets every run.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..400 {
            let (sport, dport) = (next() as u16, next() as u16);
            let options = (i % 3) * 4; // IPv4 options: 0, 4 or 8 bytes
            let (src, dst, packet): (IpAddr, IpAddr, Vec<u8>) = if i % 2 == 0 {
                let (s, d) = ((next() as u32).to_be_bytes(), (next() as u32).to_be_bytes());
                let mut p = vec![
                    0x45 + (options / 4) as u8,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0x40,
                    0,
                    64,
                    6,
                    0,
                    0,
                ];
                p.extend_from_slice(&s);
                p.extend_from_slice(&d);
                p.extend(std::iter::repeat_n(1u8, options));
                p.extend_from_slice(&sport.to_be_bytes());
                p.extend_from_slice(&dport.to_be_bytes());
                p.extend_from_slice(&[0u8; 16]);
                let len = p.len() as u16;
                p[2..4].copy_from_slice(&len.to_be_bytes());
                (s.into(), d.into(), p)
            } else {
                let s: [u8; 16] = (u128::from(next()) << 64 | u128::from(next())).to_be_bytes();
                let d: [u8; 16] = (u128::from(next()) << 64 | u128::from(next())).to_be_bytes();
                // Two thirds of them behind a Hop-by-Hop Options header: the kernel's
                // temporary jumbo one (8 bytes), or 16 bytes of padding.
                let hop_by_hop: &[u8] = match i % 6 {
                    1 => &[],
                    3 => &[6, 0, 0xc2, 4, 0, 1, 0, 0],
                    _ => &[6, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                };
                let next = if hop_by_hop.is_empty() { 6 } else { 0 };
                let mut p = vec![0x60, 0, 0, 0, 0, 20, next, 64];
                p.extend_from_slice(&s);
                p.extend_from_slice(&d);
                p.extend_from_slice(hop_by_hop);
                p.extend_from_slice(&sport.to_be_bytes());
                p.extend_from_slice(&dport.to_be_bytes());
                p.extend_from_slice(&[0u8; 16]);
                (s.into(), d.into(), p)
            };
            let (a, b) = (SocketAddr::new(src, sport), SocketAddr::new(dst, dport));
            let want = steering.queue_of(a, b);
            assert_eq!(run(&packet), want, "packet {i}: {a} -> {b}");
            assert_eq!(want, steering.queue_of(b, a), "symmetric: {a} <-> {b}");
        }

        // Left to queue 0: UDP, an IPv4 fragment, IPv6 behind an extension header other than
        // one Hop-by-Hop header, or UDP behind that one, a packet too short for its ports
        // (the test run itself refuses anything shorter than an IPv4 header), another IP
        // version.
        let mut udp = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 1];
        udp.extend_from_slice(&[198, 18, 0, 2, 0x30, 0x39, 0, 53, 0, 8, 0, 0]);
        assert_eq!(run(&udp), 0);
        let mut fragment = udp.clone();
        fragment[9] = 6;
        fragment[6] = 0x20; // more fragments
        assert_eq!(run(&fragment), 0);
        let mut ext = vec![0x60, 0, 0, 0, 0, 28, 43, 64];
        ext.extend_from_slice(&[0x20; 32]);
        ext.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0, 0x30, 0x39, 0, 80]);
        ext.extend_from_slice(&[0u8; 16]);
        assert_eq!(run(&ext), 0, "a Routing header");
        let mut hop_udp = ext.clone();
        hop_udp[6] = 0;
        hop_udp[40] = 17;
        assert_eq!(run(&hop_udp), 0, "UDP behind a Hop-by-Hop header");
        let short = [
            0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ];
        assert_eq!(run(&short), 0);
        assert_eq!(run(&[0x50; 40]), 0);
    }

    /// A program the verifier refuses (it exits without setting R0) is an error that says
    /// why, from the verifier's own log.
    #[cfg(feature = "netns")]
    #[test]
    fn a_refused_program_reports_the_verifiers_reason() {
        if !crate::netns::require_tun("a_refused_program_reports_the_verifiers_reason") {
            return;
        }
        let exit = Insn {
            code: JMP | EXIT,
            dst: 0,
            src: 0,
            off: 0,
            imm: 0,
        };
        let e = super::super::sys::load_socket_filter(&[exit.encode()], "synack_bad")
            .expect_err("the verifier refuses it");
        let text = e.to_string();
        assert!(text.contains("verifier:") && text.contains("R0"), "{text}");
    }
}
