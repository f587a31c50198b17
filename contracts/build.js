// Compiles the contracts with the npm `solc` package into artifacts.json (ABI + bytecode),
// the artifact the portal loads; the portal itself never needs Node.
// Usage: ./build            write artifacts.json
//        ./build --stdout   print the artifact instead (tests compare it with the committed one)
"use strict";

const fs = require("fs");
const path = require("path");
const solc = require("solc");

const HERE = __dirname;
const SOURCES = [
  "RewardDistributor.sol",
  "TestToken.sol",
  "TestContractWallet.sol",
  "AggregatorV3Interface.sol",
  "TestPriceFeed.sol",
];
const OUT = path.join(HERE, "artifacts.json");

function findImport(importPath) {
  for (const base of [HERE, path.join(HERE, "node_modules")]) {
    const candidate = path.join(base, importPath);
    if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, "utf8") };
  }
  return { error: `not found: ${importPath}` };
}

const input = {
  language: "Solidity",
  sources: Object.fromEntries(
    SOURCES.map((name) => [name, { content: fs.readFileSync(path.join(HERE, name), "utf8") }]),
  ),
  settings: {
    evmVersion: "cancun",
    optimizer: { enabled: true, runs: 200 },
    // No metadata hash: the bytecode then depends only on the sources, not on file paths.
    metadata: { bytecodeHash: "none", appendCBOR: false },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) process.stderr.write(e.formattedMessage + "\n");
if (errors.length) process.exit(1);

const artifact = {
  compiler: `solc ${solc.version()}`,
  evmVersion: input.settings.evmVersion,
  openzeppelin: require("@openzeppelin/contracts/package.json").version,
  contracts: {},
};
for (const source of SOURCES) {
  for (const [name, contract] of Object.entries(output.contracts[source])) {
    artifact.contracts[name] = { abi: contract.abi, bytecode: "0x" + contract.evm.bytecode.object };
  }
}
const text = JSON.stringify(artifact, null, 2) + "\n";
if (process.argv.includes("--stdout")) {
  process.stdout.write(text);
} else {
  fs.writeFileSync(OUT, text);
  process.stderr.write(`wrote ${path.relative(process.cwd(), OUT)}\n`);
}
