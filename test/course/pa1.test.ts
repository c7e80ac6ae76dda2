/**
 * The course's PA1 unit tests (hao-ai-lab/cse234-w25-PA, pa1/tests), ported as written: the same
 * inputs, the same expected values, the same tolerance (atol and rtol 1e-4); the README's "Coming
 * from the Python assignment" table maps each `ad.` call to adjoint's.
 */
import { describe, expect, it } from "vitest";
import {
  add,
  addByConst,
  broadcastTo,
  div,
  divByConst,
  Evaluator,
  layerNorm,
  softmax,
  gradients,
  matmul,
  mul,
  mulByConst,
  pow,
  relu,
  sqrt,
  transpose,
  variable,
} from "../../src/index.js";
import { checkComputeOutput, checkEvaluatorOutput, t } from "./helpers.js";

const X1 = [
  [-1.0, 2.0, 0.5, 3.4],
  [0.3, 0.0, -5.8, 3.1],
];
const X2 = [
  [2.8, 0.7, -0.1, 0.0],
  [0.6, 6.6, 3.2, 3.1],
];
const X2_DIV = [
  [2.5, 4.0, -0.1, 0.1],
  [-8.0, 5.0, -2.5, -1.0],
];

describe("test_auto_diff_node_forward.py", () => {
  it("test_mul", () => {
    const [x1, x2] = [variable("x1"), variable("x2")];
    const y = mul(x1, x2);
    checkComputeOutput(
      y,
      [t(X1), t(X2)],
      [
        [-2.8, 1.4, -0.05, 0.0],
        [0.18, 0.0, -18.56, 9.61],
      ],
    );
  });
  it("test_mul_by_const", () => {
    const y = mulByConst(variable("x1"), 2.7);
    checkComputeOutput(
      y,
      [t(X1)],
      [
        [-2.7, 5.4, 1.35, 9.18],
        [0.81, 0.0, -15.66, 8.37],
      ],
    );
  });
  it("test_div", () => {
    const y = div(variable("x1"), variable("x2"));
    checkComputeOutput(
      y,
      [t(X1), t(X2_DIV)],
      [
        [-0.4, 0.5, -5.0, 34.0],
        [-0.0375, 0.0, 2.32, -3.1],
      ],
    );
  });
  it("test_div_by_const", () => {
    const y = divByConst(variable("x1"), 5.0);
    checkComputeOutput(
      y,
      [t(X1)],
      [
        [-0.2, 0.4, 0.1, 0.68],
        [0.06, 0.0, -1.16, 0.62],
      ],
    );
  });
  it("test_matmul", () => {
    const y = matmul(variable("x1"), variable("x2"));
    checkComputeOutput(
      y,
      [
        t([
          [1.0, 2.0],
          [3.0, 4.0],
          [5.0, 6.0],
        ]),
        t([
          [7.0, 8.0, 9.0],
          [10.0, 11.0, 12.0],
        ]),
      ],
      [
        [27.0, 30.0, 33.0],
        [61.0, 68.0, 75.0],
        [95.0, 106.0, 117.0],
      ],
    );
  });
  it("test_relu", () => {
    const y = relu(variable("x"));
    checkComputeOutput(
      y,
      [
        t([
          [-1.0, 2.0, 0.0],
          [3.0, -4.0, 5.0],
        ]),
      ],
      [
        [0.0, 2.0, 0.0],
        [3.0, 0.0, 5.0],
      ],
    );
  });
  it("test_transpose (ad.transpose(x, 1, 0) swaps axes 1 and 0)", () => {
    const y = transpose(variable("x"), [1, 0, 2]);
    checkComputeOutput(
      y,
      [
        t([
          [
            [1.0, 2.0],
            [3.0, 4.0],
          ],
          [
            [5.0, 6.0],
            [7.0, 8.0],
          ],
        ]),
      ],
      [
        [
          [1.0, 2.0],
          [5.0, 6.0],
        ],
        [
          [3.0, 4.0],
          [7.0, 8.0],
        ],
      ],
    );
  });
  it("test_broadcast (input_shape [3,2], target_shape [2,3,2])", () => {
    const y = broadcastTo(variable("x"), [2, 3, 2]);
    const x = [
      [1.0, 2.0],
      [3.0, 4.0],
      [5.0, 6.0],
    ];
    checkComputeOutput(y, [t(x)], [x, x]);
  });
  it("test_sqrt", () => {
    const y = sqrt(variable("x"));
    checkComputeOutput(
      y,
      [
        t([
          [4.0, 9.0],
          [16.0, 25.0],
        ]),
      ],
      [
        [2.0, 3.0],
        [4.0, 5.0],
      ],
    );
  });
  it("test_power", () => {
    const y = pow(variable("x"), 2);
    checkComputeOutput(
      y,
      [
        t([
          [1.0, 2.0],
          [3.0, 4.0],
        ]),
      ],
      [
        [1.0, 4.0],
        [9.0, 16.0],
      ],
    );
  });
});

describe("test_auto_diff_node_backward.py", () => {
  it("test_mul", () => {
    const [x1, x2, yGrad] = [variable("x1"), variable("x2"), variable("y_grad")];
    const y = mul(x1, x2);
    const [x1Grad, x2Grad] = y.op.gradient(y, yGrad);
    const evaluator = new Evaluator([x1Grad, x2Grad]);
    checkEvaluatorOutput(
      evaluator,
      new Map([
        [x1, t(X1)],
        [x2, t(X2)],
        [
          yGrad,
          t([
            [-0.4, 0.5, -5.0, 34.0],
            [-0.0375, 0.0, 2.32, -3.1],
          ]),
        ],
      ]),
      [
        [
          [-1.12, 0.35, 0.5, 0.0],
          [-0.0225, 0.0, 7.424, -9.61],
        ],
        [
          [0.4, 1.0, -2.5, 115.6],
          [-0.01125, 0.0, -13.456, -9.61],
        ],
      ],
    );
  });
  it("test_div", () => {
    const [x1, x2, yGrad] = [variable("x1"), variable("x2"), variable("y_grad")];
    const y = div(x1, x2);
    const [x1Grad, x2Grad] = y.op.gradient(y, yGrad);
    checkEvaluatorOutput(
      new Evaluator([x1Grad, x2Grad]),
      new Map([
        [x1, t(X1)],
        [x2, t(X2_DIV)],
        [yGrad, t([Array(4).fill(1), Array(4).fill(1)])],
      ]),
      [
        [
          [0.4, 0.25, -10.0, 10.0],
          [-0.125, 0.2, -0.4, -1.0],
        ],
        [
          [0.16, -0.125, -50.0, -340.0],
          [-0.0046875, 0, 0.928, -3.1],
        ],
      ],
    );
  });
  it("test_matmul", () => {
    const [x1, x2, yGrad] = [variable("x1"), variable("x2"), variable("y_grad")];
    const y = matmul(x1, x2);
    const [x1Grad, x2Grad] = y.op.gradient(y, yGrad);
    checkEvaluatorOutput(
      new Evaluator([x1Grad, x2Grad]),
      new Map([
        [
          x1,
          t([
            [1.0, 2.0],
            [3.0, 4.0],
            [5.0, 6.0],
          ]),
        ],
        [
          x2,
          t([
            [7.0, 8.0, 9.0],
            [10.0, 11.0, 12.0],
          ]),
        ],
        [yGrad, t([Array(3).fill(1), Array(3).fill(1), Array(3).fill(1)])],
      ]),
      [
        [
          [24.0, 33.0],
          [24.0, 33.0],
          [24.0, 33.0],
        ],
        [
          [9.0, 9.0, 9.0],
          [12.0, 12.0, 12.0],
        ],
      ],
    );
  });
  it("test_relu", () => {
    const [x, yGrad] = [variable("x"), variable("y_grad")];
    const y = relu(x);
    const xGrad = y.op.gradient(y, yGrad)[0];
    checkEvaluatorOutput(
      new Evaluator([xGrad]),
      new Map([
        [
          x,
          t([
            [-1.0, 2.0, 0.0],
            [3.0, -4.0, 5.0],
          ]),
        ],
        [yGrad, t([Array(3).fill(1), Array(3).fill(1)])],
      ]),
      [
        [
          [0.0, 1.0, 0.0],
          [1.0, 0.0, 1.0],
        ],
      ],
    );
  });
  it("test_transpose", () => {
    const [x, yGrad] = [variable("x"), variable("y_grad")];
    const y = transpose(x, [1, 0]);
    const xGrad = y.op.gradient(y, yGrad)[0];
    checkEvaluatorOutput(
      new Evaluator([xGrad]),
      new Map([
        [
          x,
          t([
            [1.0, 2.0, 3.0],
            [4.0, 5.0, 6.0],
          ]),
        ],
        [
          yGrad,
          t([
            [1.0, 2.0],
            [3.0, 4.0],
            [5.0, 6.0],
          ]),
        ],
      ]),
      [
        [
          [1.0, 3.0, 5.0],
          [2.0, 4.0, 6.0],
        ],
      ],
    );
  });
  it("test_broadcast", () => {
    const [x, yGrad] = [variable("x"), variable("y_grad")];
    const y = broadcastTo(x, [2, 3, 2]);
    const xGrad = y.op.gradient(y, yGrad)[0];
    checkEvaluatorOutput(
      new Evaluator([xGrad]),
      new Map([
        [
          x,
          t([
            [1.0, 2.0],
            [3.0, 4.0],
            [5.0, 6.0],
          ]),
        ],
        [
          yGrad,
          t([
            [
              [1.0, 2.0],
              [3.0, 4.0],
              [5.0, 6.0],
            ],
            [
              [7.0, 8.0],
              [9.0, 10.0],
              [11.0, 12.0],
            ],
          ]),
        ],
      ]),
      [
        [
          [8.0, 10.0],
          [12.0, 14.0],
          [16.0, 18.0],
        ],
      ],
    );
  });
  it("test_sqrt", () => {
    const [x, yGrad] = [variable("x"), variable("y_grad")];
    const y = sqrt(x);
    const xGrad = y.op.gradient(y, yGrad)[0];
    checkEvaluatorOutput(
      new Evaluator([xGrad]),
      new Map([
        [
          x,
          t([
            [4.0, 9.0],
            [16.0, 25.0],
          ]),
        ],
        [
          yGrad,
          t([
            [1.0, 2.0],
            [3.0, 4.0],
          ]),
        ],
      ]),
      [
        [
          [0.25, 0.33333],
          [0.375, 0.4],
        ],
      ],
    );
  });
  it("test_power", () => {
    const [x, yGrad] = [variable("x"), variable("y_grad")];
    const y = pow(x, 2);
    const xGrad = y.op.gradient(y, yGrad)[0];
    checkEvaluatorOutput(
      new Evaluator([xGrad]),
      new Map([
        [
          x,
          t([
            [1.0, 2.0],
            [3.0, 4.0],
          ]),
        ],
        [
          yGrad,
          t([
            [1.0, 1.0],
            [1.0, 1.0],
          ]),
        ],
      ]),
      [
        [
          [2.0, 4.0],
          [6.0, 8.0],
        ],
      ],
    );
  });
});

describe("test_auto_diff_graph_forward.py", () => {
  it("test_identity", () => {
    const x = variable("x1");
    const xVal = t(Array.from({ length: 4 }, () => Array.from({ length: 5 }, Math.random)));
    const nested = Array.from({ length: 4 }, (_, i) => [...xVal.data.subarray(i * 5, i * 5 + 5)]);
    checkEvaluatorOutput(new Evaluator([x]), new Map([[x, xVal]]), [nested]);
  });
  it("test_add", () => {
    const [x1, x2] = [variable("x1"), variable("x2")];
    checkEvaluatorOutput(
      new Evaluator([add(x1, x2)]),
      new Map([
        [x1, t(X1)],
        [x2, t(X2)],
      ]),
      [
        [
          [1.8, 2.7, 0.4, 3.4],
          [0.9, 6.6, -2.6, 6.2],
        ],
      ],
    );
  });
  it("test_add_by_const", () => {
    const x1 = variable("x1");
    checkEvaluatorOutput(new Evaluator([addByConst(x1, 2.7)]), new Map([[x1, t(X1)]]), [
      [
        [1.7, 4.7, 3.2, 6.1],
        [3.0, 2.7, -3.1, 5.8],
      ],
    ]);
  });
  it("test_mul, test_mul_by_const, test_div, test_div_by_const", () => {
    const [x1, x2] = [variable("x1"), variable("x2")];
    checkEvaluatorOutput(
      new Evaluator([mul(x1, x2), mulByConst(x1, 2.7), div(x1, x2), divByConst(x1, 5.0)]),
      new Map([
        [x1, t(X1)],
        [x2, t(X2_DIV)],
      ]),
      [
        X1.map((row, i) => row.map((v, j) => v * X2_DIV[i][j])),
        [
          [-2.7, 5.4, 1.35, 9.18],
          [0.81, 0.0, -15.66, 8.37],
        ],
        [
          [-0.4, 0.5, -5.0, 34.0],
          [-0.0375, 0.0, 2.32, -3.1],
        ],
        [
          [-0.2, 0.4, 0.1, 0.68],
          [0.06, 0.0, -1.16, 0.62],
        ],
      ],
    );
  });
  it("test_graph: matmul(x1, transpose(x2, 1, 0)) / 10 + x3", () => {
    const [x1, x2, x3] = [variable("x1"), variable("x2"), variable("x3")];
    const transX2 = transpose(x2, [1, 0]);
    const y = matmul(x1, transX2).div(10).add(x3);
    checkEvaluatorOutput(
      new Evaluator([y]),
      new Map([
        [x1, t(X1)],
        [x2, t(X2)],
        [
          x3,
          t([
            [2.71, 3.14],
            [3.87, -4.0],
          ]),
        ],
      ]),
      [
        [
          [2.565, 5.614],
          [4.012, -4.877],
        ],
      ],
    );
  });
});

describe("test_auto_diff_graph_backward.py", () => {
  it("test_graph: gradients of matmul(x1, transpose(x2, 1, 0)) / 10 * x3", () => {
    const [x1, x2, x3] = [variable("x1"), variable("x2"), variable("x3")];
    const transX2 = transpose(x2, [1, 0]);
    const y = matmul(x1, transX2).div(10).mul(x3);
    const [x1Grad, x2Grad, x3Grad] = gradients(y, [x1, x2, x3]);
    checkEvaluatorOutput(
      new Evaluator([x1Grad, x2Grad, x3Grad]),
      new Map([
        [x1, t(X1)],
        [x2, t(X2)],
        [
          x3,
          t([
            [2.71, 3.14],
            [3.87, -4.0],
          ]),
        ],
      ]),
      [
        [
          [0.9472, 2.2621, 0.9777, 0.9734],
          [0.8436, -2.3691, -1.3187, -1.24],
        ],
        [
          [-0.1549, 0.542, -2.1091, 2.1211],
          [-0.434, 0.628, 2.477, -0.1724],
        ],
        [
          [-0.145, 2.474],
          [0.142, -0.877],
        ],
      ],
    );
  });
  it("test_gradient_of_gradient", () => {
    const x1 = variable("x1");
    const x2 = variable("x2");
    const y = x1.mul(x1).add(x1.mul(x2));
    const [gradX1, gradX2] = gradients(y, [x1, x2]);
    const [gradX1X1, gradX1X2] = gradients(gradX1, [x1, x2]);
    const [gradX2X1, gradX2X2] = gradients(gradX2, [x1, x2]);
    const evaluator = new Evaluator([y, gradX1, gradX2, gradX1X1, gradX1X2, gradX2X1, gradX2X2]);
    const ones = [Array(4).fill(1), Array(4).fill(1)];
    const zeros = [Array(4).fill(0), Array(4).fill(0)];
    checkEvaluatorOutput(
      evaluator,
      new Map([
        [x1, t(X1)],
        [x2, t(X2)],
      ]),
      [
        [
          [-1.8, 5.4, 0.2, 11.56],
          [0.27, 0.0, 15.08, 19.22],
        ],
        [
          [0.8, 4.7, 0.9, 6.8],
          [1.2, 6.6, -8.4, 9.3],
        ],
        X1,
        ones.map((row) => row.map((v) => 2 * v)),
        ones,
        ones,
        zeros,
      ],
    );
  });
  it("gradients() returns one node per input, as the course's", () => {
    const [x1, x2] = [variable("x1"), variable("x2")];
    expect(gradients(x1.mul(x1), [x1, x2])).toHaveLength(2);
  });
});

const M3 = [
  [
    [1.0, 2.0, 3.0],
    [4.0, 5.0, 6.0],
    [7.0, 8.0, 9.0],
  ],
  [
    [9.0, 8.0, 7.0],
    [6.0, 5.0, 4.0],
    [3.0, 2.0, 1.0],
  ],
];

describe("the N-D cases: test_matmul_3d and test_layernorm", () => {
  it("node forward test_matmul_3d", () => {
    const y = matmul(variable("x1"), variable("x2"));
    checkComputeOutput(
      y,
      [t(M3), t(M3)],
      [
        [
          [30.0, 36.0, 42.0],
          [66.0, 81.0, 96.0],
          [102.0, 126.0, 150.0],
        ],
        [
          [150.0, 126.0, 102.0],
          [96.0, 81.0, 66.0],
          [42.0, 36.0, 30.0],
        ],
      ],
    );
  });
  it("node backward test_matmul_3d", () => {
    const [x1, x2, yGrad] = [variable("x1"), variable("x2"), variable("y_grad")];
    const y = matmul(x1, x2);
    const [x1Grad, x2Grad] = y.op.gradient(y, yGrad);
    const ones = [0, 1].map(() => [0, 1, 2].map(() => [1, 1, 1]));
    checkEvaluatorOutput(
      new Evaluator([x1Grad, x2Grad]),
      new Map([
        [x1, t(M3)],
        [x2, t(M3)],
        [yGrad, t(ones)],
      ]),
      [
        [
          [
            [6.0, 15.0, 24.0],
            [6.0, 15.0, 24.0],
            [6.0, 15.0, 24.0],
          ],
          [
            [24.0, 15.0, 6.0],
            [24.0, 15.0, 6.0],
            [24.0, 15.0, 6.0],
          ],
        ],
        [
          [
            [12.0, 12.0, 12.0],
            [15.0, 15.0, 15.0],
            [18.0, 18.0, 18.0],
          ],
          [
            [18.0, 18.0, 18.0],
            [15.0, 15.0, 15.0],
            [12.0, 12.0, 12.0],
          ],
        ],
      ],
    );
  });
  it("node forward test_layernorm (normalized_shape=[3])", () => {
    const y = layerNorm(variable("x"), { axis: -1 });
    checkComputeOutput(
      y,
      [
        t([
          [1.0, 2.0, 3.0],
          [4.0, 5.0, 6.0],
        ]),
      ],
      [
        [-1.224745, 0.0, 1.224745],
        [-1.224745, 0.0, 1.224745],
      ],
    );
  });
  it("node backward test_layernorm", () => {
    const [x, yGrad] = [variable("x"), variable("y_grad")];
    const y = layerNorm(x, { axis: -1 });
    const xGrad = y.op.gradient(y, yGrad)[0];
    checkEvaluatorOutput(
      new Evaluator([xGrad]),
      new Map([
        [
          x,
          t([
            [1.0, 2.0, 3.0],
            [4.0, 5.0, 6.0],
          ]),
        ],
        [
          yGrad,
          t([
            [12, 4, 2],
            [-3, -5, 3],
          ]),
        ],
      ]),
      [
        [
          [1.2248, -2.4495, 1.2246],
          [2.0412, -4.0825, 2.0413],
        ],
      ],
    );
  });
});

describe("test_softmax: softmax is an op of its own, with its own gradient", () => {
  const X = [
    [1.0, 2.0, 3.0],
    [4.0, 5.0, 6.0],
  ];
  it("node forward test_softmax", () => {
    const y = softmax(variable("x"));
    expect(y.op.name).toBe("softmax");
    checkComputeOutput(
      y,
      [t(X)],
      [
        [0.09, 0.2447, 0.6652],
        [0.09, 0.2447, 0.6652],
      ],
    );
  });
  it("node backward test_softmax", () => {
    const [x, yGrad] = [variable("x"), variable("y_grad")];
    const y = softmax(x);
    const xGrad = y.op.gradient(y, yGrad)[0];
    checkEvaluatorOutput(
      new Evaluator([xGrad]),
      new Map([
        [x, t(X)],
        [
          yGrad,
          t([
            [0.5, -0.3, 0.8],
            [-0.2, 0.4, -0.1],
          ]),
        ],
      ]),
      [
        [
          [-0.0003, -0.1967, 0.1971],
          [-0.0192, 0.0946, -0.0754],
        ],
      ],
    );
  });
});
