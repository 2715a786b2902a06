//! What a hooked call was: its arguments, read from the task's saved user registers at exit
//! (x86_64 keeps them in `pt_regs`; only `ax` takes the return value).

use observer_common::{AT_FDCWD, AT_SYMLINK_NOFOLLOW, Call, KIND_CHDIR, KIND_FCHDIR, Syscall};

/// `creat()` is `open(O_CREAT|O_WRONLY|O_TRUNC)`.
const CREAT_FLAGS: u64 = 0o1101;

/// Argument `off` (a tracepoint-format offset, 16 + 8 * index) of a syscall, from the six
/// argument registers.
#[inline(always)]
pub(crate) fn arg(a: &[u64; 6], off: Option<(&'static str, usize)>) -> u64 {
    match off {
        Some((_, off)) => a[((off - 16) / 8) % 6],
        None => 0,
    }
}

/// What call `sys` with argument registers `a` is: its path pointer, dirfd, flags and aux.
#[inline(always)]
pub(crate) fn call_of(sys: Syscall, a: &[u64; 6]) -> Call {
    let l = sys.layout();
    let dfd = match l.dfd {
        Some(_) => arg(a, l.dfd) as i32,
        None => AT_FDCWD,
    };
    let flags = match sys {
        Syscall::Creat => CREAT_FLAGS,
        Syscall::Newlstat => AT_SYMLINK_NOFOLLOW,
        _ => arg(a, l.flags),
    };
    Call {
        path_ptr: arg(a, Some(l.path)),
        flags,
        aux: arg(a, l.aux),
        dfd,
        syscall: sys as u32,
    }
}

/// x86_64 `struct pt_regs`: the user registers saved at syscall entry (a stable layout; the
/// BTF-typed programs below load its fields directly, checked by the verifier against the
/// kernel's own BTF).
#[repr(C)]
pub(crate) struct PtRegs {
    pub(crate) r15: u64,
    pub(crate) r14: u64,
    pub(crate) r13: u64,
    pub(crate) r12: u64,
    pub(crate) bp: u64,
    pub(crate) bx: u64,
    pub(crate) r11: u64,
    pub(crate) r10: u64,
    pub(crate) r9: u64,
    pub(crate) r8: u64,
    pub(crate) ax: u64,
    pub(crate) cx: u64,
    pub(crate) dx: u64,
    pub(crate) si: u64,
    pub(crate) di: u64,
    pub(crate) orig_ax: u64,
    pub(crate) ip: u64,
    pub(crate) cs: u64,
    pub(crate) flags: u64,
    pub(crate) sp: u64,
    pub(crate) ss: u64,
}

/// `__USER_CS`: a 64-bit process. 32-bit (compat) processes number their syscalls differently;
/// the per-syscall tracepoints ignore them too.
pub(crate) const USER_CS: u64 = 0x33;
/// Largest syscall number the dispatch table covers (x32 numbers, with bit 30 set, fall out).
pub(crate) const NR_MAX: usize = observer_common::SYSCALL_TABLE_LEN;

/// The call a hooked syscall of `kind` made, from its argument registers.
#[inline(always)]
pub(crate) fn call_of_kind(kind: u32, a: &[u64; 6]) -> Option<Call> {
    // One arm per syscall, each with its layout constant: with a runtime layout the register
    // index would be variable, which the verifier refuses on a stack array.
    Some(match kind {
        0 => call_of(Syscall::Open, a),
        1 => call_of(Syscall::Openat, a),
        2 => call_of(Syscall::Openat2, a),
        3 => call_of(Syscall::Creat, a),
        4 => call_of(Syscall::Newstat, a),
        5 => call_of(Syscall::Newlstat, a),
        6 => call_of(Syscall::Newfstatat, a),
        7 => call_of(Syscall::Statx, a),
        8 => call_of(Syscall::Access, a),
        9 => call_of(Syscall::Faccessat, a),
        10 => call_of(Syscall::Faccessat2, a),
        11 => call_of(Syscall::Execve, a),
        12 => call_of(Syscall::Execveat, a),
        // chdir(path), fchdir(fd).
        k if k == KIND_CHDIR as u32 => Call {
            path_ptr: a[0],
            flags: 0,
            aux: 0,
            dfd: AT_FDCWD,
            syscall: k,
        },
        k if k == KIND_FCHDIR as u32 => Call {
            path_ptr: 0,
            flags: 0,
            aux: a[0],
            dfd: AT_FDCWD,
            syscall: k,
        },
        _ => return None,
    })
}
