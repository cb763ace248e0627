// Jest loads TypeScript through ts-jest; the noble packages ship ESM only, so they are transformed too.
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: "node",
  // Builds dist/ first: tests start nodes through bin/resonetics, which runs the compiled code.
  globalSetup: "<rootDir>/test/support/global-setup.js",
  roots: ["<rootDir>/test"],
  testMatch: ["**/*.test.ts"],
  transform: {
    "^.+\\.ts$": ["ts-jest", { tsconfig: "tsconfig.json" }],
    "^.+\\.m?js$": ["ts-jest", { tsconfig: { allowJs: true, module: "commonjs", target: "ES2022" } }],
  },
  transformIgnorePatterns: ["/node_modules/(?!(@noble)/)"],
  reporters: ["default", "<rootDir>/test/support/summary-reporter.js"],
  testTimeout: 60000,
};
