//! Says hello through the terminal service, with its arguments, its name
//! as init knows it (a process RPC) and how many processes run.

#![cfg_attr(target_os = "none", no_std, no_main)]

use api::AosRpc;

m3_lmp::main!(run);

fn run(args: &aos::Args) -> i32 {
    let rpc = m3_lmp::rpc::process_channel();
    let pid = m3_lmp::rt::own_pid(args);
    let name = pid.map(|p| rpc.process_get_name(p));
    let mut pids = [0; 32];
    let n = rpc.process_get_all_pids(&mut pids);
    aos::print!("hello: ");
    for a in args.iter().skip(1) {
        aos::print!("{a} ");
    }
    aos::println!("(I am {:?}; {:?} processes run)", name, n);
    0
}
