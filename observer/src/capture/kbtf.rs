//! Just enough of a BTF reader to find where a field sits in a kernel struct.
//!
//! The BTF-typed programs read `task_struct::comm` with two plain loads (a helper call costs
//! several times more on every hooked syscall of every process). The offset differs between
//! kernel builds, so it is looked up here, at load, in the running kernel's BTF
//! (/sys/kernel/btf/vmlinux), and handed to the program through its frozen config. The verifier
//! checks every such load against the same BTF, so a wrong offset is refused, never misread.

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;

/// Byte offset of `member` in the struct named `strukt`, or None when the BTF has no such
/// struct or member (or is malformed). The first struct of that name wins, as in the kernel.
pub(crate) fn member_offset(btf: &[u8], strukt: &str, member: &str) -> Option<u32> {
    let u16_at =
        |o: usize| -> Option<u16> { Some(u16::from_ne_bytes(btf.get(o..o + 2)?.try_into().ok()?)) };
    let u32_at =
        |o: usize| -> Option<u32> { Some(u32::from_ne_bytes(btf.get(o..o + 4)?.try_into().ok()?)) };
    if u16_at(0)? != BTF_MAGIC {
        return None;
    }
    let hdr_len = u32_at(4)? as usize;
    let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
    let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
    let types = hdr_len.checked_add(type_off)?;
    let types_end = types.checked_add(type_len)?;
    let strs = btf.get(hdr_len + str_off..hdr_len.checked_add(str_off)?.checked_add(str_len)?)?;
    let name_is = |off: u32, want: &str| -> bool {
        let Some(s) = strs.get(off as usize..) else {
            return false;
        };
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        &s[..end] == want.as_bytes()
    };

    let mut o = types;
    while o + 12 <= types_end {
        let name_off = u32_at(o)?;
        let info = u32_at(o + 4)?;
        let vlen = (info & 0xffff) as usize;
        let kind = (info >> 24) & 0x1f;
        let kind_flag = info >> 31 != 0;
        let extra = match kind {
            1 | 14 | 17 => 4,          // INT, VAR, DECL_TAG
            3 => 12,                   // ARRAY
            4 | 5 => 12 * vlen,        // STRUCT, UNION: members
            6 | 13 => 8 * vlen,        // ENUM, FUNC_PROTO
            15 | 19 => 12 * vlen,      // DATASEC, ENUM64
            2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
            _ => return None, // a kind this reader does not know: give up rather than guess
        };
        if kind == KIND_STRUCT && name_is(name_off, strukt) {
            for m in 0..vlen {
                let mo = o + 12 + 12 * m;
                if name_is(u32_at(mo)?, member) {
                    let bits = u32_at(mo + 8)?;
                    // With kind_flag set the low 24 bits are the bit offset, the rest a
                    // bitfield size; a byte-aligned, non-bitfield member is all we can use.
                    let (bit_off, bitfield) = if kind_flag {
                        (bits & 0xff_ffff, bits >> 24)
                    } else {
                        (bits, 0)
                    };
                    return (bitfield == 0 && bit_off % 8 == 0).then_some(bit_off / 8);
                }
            }
            return None;
        }
        o += 12 + extra;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with `struct task_struct { int pid; char comm[16]; }` (pid at 0, comm at 4).
    fn blob(kind_flag: bool) -> Vec<u8> {
        let strs = b"\0int\0task_struct\0pid\0comm\0char\0";
        let s = |name: &str| -> u32 {
            let w = format!("\0{name}\0");
            strs.windows(w.len())
                .position(|x| x == w.as_bytes())
                .unwrap() as u32
                + 1
        };
        let mut t = Vec::new();
        let mut put = |v: u32| t.extend_from_slice(&v.to_ne_bytes());
        // [1] int
        put(s("int"));
        put(1 << 24);
        put(4);
        put(32);
        // [2] char[16] as ARRAY of [1]
        put(0);
        put(3 << 24);
        put(0);
        put(1);
        put(1);
        put(16);
        // [3] struct task_struct, 2 members
        put(s("task_struct"));
        put((4 << 24) | 2 | if kind_flag { 1 << 31 } else { 0 });
        put(20);
        put(s("pid"));
        put(1);
        put(0);
        put(s("comm"));
        put(2);
        put(32);
        let mut b = Vec::new();
        b.extend_from_slice(&BTF_MAGIC.to_ne_bytes());
        b.extend_from_slice(&[1, 0]);
        for v in [24u32, 0, t.len() as u32, t.len() as u32, strs.len() as u32] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&t);
        b.extend_from_slice(strs);
        b
    }

    #[test]
    fn finds_member_offsets() {
        for kf in [false, true] {
            let b = blob(kf);
            assert_eq!(member_offset(&b, "task_struct", "comm"), Some(4));
            assert_eq!(member_offset(&b, "task_struct", "pid"), Some(0));
            assert_eq!(member_offset(&b, "task_struct", "nope"), None);
            assert_eq!(member_offset(&b, "mm_struct", "comm"), None);
        }
    }

    #[test]
    fn malformed_input_is_none_not_a_panic() {
        let b = blob(false);
        for n in 0..b.len() {
            let _ = member_offset(&b[..n], "task_struct", "comm");
        }
        assert_eq!(member_offset(b"", "task_struct", "comm"), None);
        assert_eq!(member_offset(&[0u8; 64], "task_struct", "comm"), None);
    }

    /// The running kernel's task_struct has a comm (when this kernel has BTF at all).
    #[test]
    fn running_kernel_task_comm() {
        let Ok(b) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            return;
        };
        let off =
            member_offset(&b, "task_struct", "comm").expect("task_struct.comm in vmlinux BTF");
        assert!(off > 0 && off < 16384, "implausible offset {off}");
    }
}
