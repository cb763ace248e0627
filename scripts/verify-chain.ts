/** scripts/verify-chain: the same code as `resonetics verify-chain` (exit 0/1/2). */
import { main } from "../src/cli/main";

void main([process.argv[0], "resonetics", "verify-chain", ...process.argv.slice(2)]);
