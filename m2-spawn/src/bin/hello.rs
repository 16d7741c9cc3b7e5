//! Prints its arguments and then its environment, one per line, quoted
//! as Rust quotes strings, so spaces, quotes and backslashes show exactly
//! (book ch. 4.17).

#![cfg_attr(target_os = "none", no_std, no_main)]

aos::main!(run);

fn run(args: &aos::Args) -> i32 {
    aos::println!("hello: {} arguments", args.len());
    for (i, a) in args.iter().enumerate() {
        aos::println!("hello: argv[{i}] = {a:?}");
    }
    for (i, e) in args.envs().enumerate() {
        aos::println!("hello: envp[{i}] = {e:?}");
    }
    0
}
